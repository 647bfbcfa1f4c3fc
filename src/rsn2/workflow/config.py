"""Training files for your own tasks (``rsn2 train`` / ``rsn2 add-task``), validated on load.

Schema (keys not listed are refused; paths are relative to the file's folder, or to ``--data-dir``)::

    network: {kind: fc-a}            # fc-a | conv-a | conv-b | mlp (rsn2.network.registry), or
                                     # {layers: [...], input_shape: [...]} (layers as in model files:
                                     # {kind: linear, in_features: 4, ...}), or {module:
                                     # package.module:callable, input_shape: [...]} (your nn.Module,
                                     # made multitask by rsn2.multitask);
                                     # rsn2 add-task takes the model's network and refuses this key
    tasks:
      species:
        kind: classification         # classification | regression
        data: {csv: iris.csv, target: species}        # features: every other column, or features: [...]
        adapter: [{kind: linear, in_features: 4, out_features: 784}, {kind: relu}]   # optional: else
        head: [{kind: linear, in_features: 1000, out_features: 3}]                   # inferred from the data
        test: {csv: iris-test.csv}   # optional; else test_fraction of data (default 0.2) is held out
        keep_fraction: 0.3
      digits:
        kind: classification
        data: {images: digits/}      # one folder per class; channels: 1 | 3, size: [width, height]
      reviews:
        kind: classification
        data: {jsonl: reviews.jsonl, text: text, label: label}    # vocabulary: 10000, length: 64
      values:
        kind: regression
        data: {npz: values.npz, x: x, y: y}         # or {npy: x.npy, target: y.npy}
    stages: [[species, digits], [values]]           # optional; default: one stage with every task
    training: {max_epochs: 50, batch_size: 64}      # TrainConfig settings, as in experiment files
    selection: {method: gradient}                   # SelectionConfig settings
    seed: 0
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rsn2.errors import ConfigError, RSN2Error
from rsn2.io.yaml_file import read_yaml_file
from rsn2.keys import check_keys
from rsn2.network.registry import NETWORKS, NetworkChoice, parse_network
from rsn2.network.spec import LayerSpec, check_keep_fraction
from rsn2.network.task_kinds import TASK_KINDS
from rsn2.selection import SelectionConfig
from rsn2.training import TrainConfig

FORMATS = {
    "csv": {"target": True, "features": False},
    "npz": {"x": True, "y": True},
    "npy": {"target": True},
    "images": {"channels": False, "size": False},
    "jsonl": {"text": True, "label": True, "vocabulary": False, "length": False},
}
_TOP = {"network", "tasks", "stages", "training", "selection", "seed"}
_TASK = {"kind", "data", "test", "test_fraction", "keep_fraction", "batch_size", "adapter", "head"}


@dataclass(frozen=True)
class DataSource:
    """One file (or folder) of a task: its ``format`` (a key of :data:`FORMATS`), resolved ``path`` and options."""

    format: str
    path: Path
    options: dict[str, Any]


@dataclass(frozen=True)
class TaskEntry:
    name: str
    kind: str
    data: DataSource
    test: DataSource | None
    test_fraction: float
    keep_fraction: float
    batch_size: int | None
    adapter: tuple[LayerSpec, ...] | None = None
    head: tuple[LayerSpec, ...] | None = None


@dataclass(frozen=True)
class TrainFile:
    """A validated training file."""

    path: Path
    network: NetworkChoice | None
    """What ``network:`` names (None in an ``add-task`` file: the model's network)."""
    tasks: tuple[TaskEntry, ...]
    stages: tuple[tuple[str, ...], ...]
    training: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def train_config(self) -> TrainConfig:
        return TrainConfig(**{"seed": self.seed, "progress": False, **self.training})

    def selection_config(self) -> SelectionConfig:
        return SelectionConfig(**self.selection)


def load_train_file(
    path: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None = None, network_allowed: bool = True
) -> TrainFile:
    """Read and validate a training file; every error names the file, the key and what is allowed."""
    path = Path(path)
    where = str(path)
    raw = read_yaml_file(path, "a training file")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {sorted(_TOP)}")
    check_keys(raw, {k: k == "tasks" for k in _TOP}, where)
    base = Path(data_dir) if data_dir is not None else path.parent
    network = raw.get("network")
    if not network_allowed and network is not None:
        raise ConfigError(f"{where}: network: add-task uses the model's network; remove this key")
    choice: NetworkChoice | None = None
    if network_allowed:
        if network is None:
            raise ConfigError(f"{where}: network: missing; give {{kind: NAME}} ({list(NETWORKS)}), layers or a module")
        try:
            choice = parse_network(network)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    tasks_raw = raw["tasks"]
    if not isinstance(tasks_raw, dict) or not tasks_raw:
        raise ConfigError(f"{where}: tasks: must be a mapping of task names to task entries")
    tasks = tuple(_task(str(name), entry, base, f"{where}: tasks.{name}") for name, entry in tasks_raw.items())
    names = [t.name for t in tasks]
    stages = _stages(raw.get("stages"), names, where)
    training = _mapping(raw.get("training") or {}, f"{where}: training")
    selection = _mapping(raw.get("selection") or {}, f"{where}: selection")
    check_keys(training, {f.name: False for f in fields(TrainConfig)}, f"{where}: training")
    check_keys(selection, {f.name: False for f in fields(SelectionConfig)}, f"{where}: selection")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"{where}: seed: must be an integer, got {seed!r}")
    out = TrainFile(path, choice, tasks, stages, dict(training), dict(selection), seed)
    try:
        out.train_config()
    except (RSN2Error, TypeError) as exc:
        raise ConfigError(f"{where}: training: {exc}") from None
    try:
        out.selection_config()
    except (RSN2Error, TypeError) as exc:
        raise ConfigError(f"{where}: selection: {exc}") from None
    return out


def _task(name: str, entry: Any, base: Path, where: str) -> TaskEntry:
    entry = _mapping(entry, where)
    check_keys(entry, {k: k in ("kind", "data") for k in _TASK}, where)
    if entry["kind"] not in TASK_KINDS:
        raise ConfigError(f"{where}.kind: must be one of {list(TASK_KINDS)}, got {entry['kind']!r}")
    data = _source(entry["data"], base, f"{where}.data")
    test = _source(entry["test"], base, f"{where}.test", like=data) if entry.get("test") is not None else None
    fraction = entry.get("test_fraction", 0.2)
    if test is not None and "test_fraction" in entry:
        raise ConfigError(f"{where}: give test or test_fraction, not both")
    if not isinstance(fraction, (int, float)) or not 0.0 < float(fraction) < 1.0:
        raise ConfigError(f"{where}.test_fraction: must be a number in (0, 1), got {fraction!r}")
    try:
        keep = check_keep_fraction(entry.get("keep_fraction", 0.1), f"{where}.keep_fraction")
    except RSN2Error as exc:
        raise ConfigError(str(exc)) from None
    batch = entry.get("batch_size")
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        raise ConfigError(f"{where}.batch_size: must be a positive integer, got {batch!r}")
    if data.format == "images" and entry["kind"] != "classification":
        raise ConfigError(f"{where}: an image folder gives class labels; kind must be classification")
    layers = {key: _layers(entry[key], f"{where}.{key}") if key in entry else None for key in ("adapter", "head")}
    return TaskEntry(name, entry["kind"], data, test, float(fraction), keep, batch, layers["adapter"], layers["head"])


def _layers(value: Any, where: str) -> tuple[LayerSpec, ...]:
    if not isinstance(value, list):
        raise ConfigError(
            f"{where}: must be a list of layers such as {{kind: linear, in_features: 4, out_features: 8}}"
        )
    try:
        return tuple(LayerSpec.from_dict(d) for d in value)
    except RSN2Error as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _source(value: Any, base: Path, where: str, like: DataSource | None = None) -> DataSource:
    value = _mapping(value, where)
    formats = [f for f in FORMATS if f in value]
    if len(formats) != 1:
        raise ConfigError(f"{where}: name exactly one file format key of {list(FORMATS)}, got {sorted(value)}")
    fmt = formats[0]
    if like is not None and fmt != like.format:
        raise ConfigError(f"{where}: the test data must have the training data's format {like.format!r}, got {fmt!r}")
    allowed = FORMATS[fmt]
    required = {k for k, need in allowed.items() if need} if like is None else set()
    check_keys({k: v for k, v in value.items() if k != fmt}, {k: k in required for k in allowed}, where)
    path = base / str(value[fmt])
    if not path.exists():
        raise ConfigError(f"{where}.{fmt}: {path} does not exist")
    options = {k: v for k, v in value.items() if k != fmt}
    if like is not None:
        options = {**like.options, **options}
    return DataSource(fmt, path, options)


def _stages(value: Any, names: list[str], where: str) -> tuple[tuple[str, ...], ...]:
    if value is None:
        return (tuple(names),)
    if not isinstance(value, list) or not value or not all(isinstance(s, list) and s for s in value):
        raise ConfigError(f"{where}: stages: must be a list of non-empty lists of task names, got {value!r}")
    flat = [str(t) for s in value for t in s]
    unknown = sorted(set(flat) - set(names))
    if unknown:
        raise ConfigError(f"{where}: stages: unknown task(s) {unknown}; tasks: {names}")
    if sorted(flat) != sorted(names):
        raise ConfigError(f"{where}: stages: every task exactly once; tasks: {names}, stages: {value}")
    return tuple(tuple(str(t) for t in s) for s in value)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping, got {value!r}")
    return value
