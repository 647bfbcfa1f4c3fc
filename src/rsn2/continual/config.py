"""Benchmark files: one YAML file per continual-learning benchmark, validated on load.

Schema (keys not listed are refused)::

    name: pmnist                      # identifier, used for output folders and results.json
    title: Permuted-MNIST, 10 tasks
    stream: {kind: permuted, dataset: mnist, tasks: 10}
                                      # or {kind: split, dataset: cifar-10, classes_per_task: 2}
                                      # or {kind: rotation, dataset: omniglot} (100 tasks x 12 characters)
    network: {kind: mlp, hidden: [100, 100]}    # or {kind: conv-a} / conv-b / fc-a, or your own
                                      # nn.Module: {module: "package.module:callable", input_shape:
                                      # [1, 28, 28]} (imported from the file's folder first; it must
                                      # output flat features; input_shape [D] feeds it flat vectors)
    keep_fraction: 0.1                # what rsn2 and PackNet give each task in every trunk layer
    training: {batch_size: 10, epochs: 5, lr: 0.001, optimizer: adam, val_fraction: 0.1}
    methods:                          # the methods to run, each with its options
      rsn2: {selection: {...}, rescale_lr: true}   # rsn2-select, rsn2-all: with forward transfer;
                                      # each may set its own keep_fraction (rsn2-select's counts reads too)
                                      # and negatives: 0.5 (self-made negatives, TrainConfig.negatives)
      packnet: {retrain_epochs: 2}    # reads every earlier task; packnet-disjoint: its own positions only
      ewc: {lambda: 100, fisher_samples: 500}
      finetune: {}
      joint: {}
      stl: {}
    published:                        # figures from the literature on the same benchmark, for the README
      source: "Kang et al., Winning Subnetworks (ICML 2022), Table 1"
      acc: {stl: 97.37, packnet: 96.37, ewc: 92.01}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsn2.continual.streams import STREAM_DATASETS, STREAM_KINDS
from rsn2.errors import ConfigError, RSN2Error
from rsn2.io.yaml_file import read_yaml_file
from rsn2.keys import check_keys, require_choice, require_mapping
from rsn2.network.registry import NetworkChoice, parse_network
from rsn2.network.spec import check_keep_fraction
from rsn2.selection import SelectionConfig
from rsn2.training import OPTIMIZERS, TrainConfig

RSN2_TRANSFER = {"rsn2": "none", "rsn2-select": "select", "rsn2-all": "all"}
"""rsn2's methods and the forward transfer each selects with (:class:`~rsn2.selection.SelectionConfig`)."""
PACKNET_READS_EARLIER = {"packnet": True, "packnet-disjoint": False}
"""PackNet's methods and whether a task reads every earlier task's frozen weights (the paper's rule)."""
METHODS = (*RSN2_TRANSFER, *PACKNET_READS_EARLIER, "ewc", "finetune", "joint", "stl")
"""Every method a benchmark can run (see :mod:`rsn2.continual.methods`)."""
_TOP = {
    "name": True,
    "title": True,
    "stream": True,
    "network": True,
    "keep_fraction": True,
    "training": False,
    "methods": True,
    "published": False,
}
_STREAM = {"kind": True, "dataset": True, "tasks": False, "classes_per_task": False}
_TRAINING = {"batch_size": False, "epochs": False, "lr": False, "optimizer": False, "val_fraction": False}
_METHOD_OPTIONS: dict[str, dict[str, bool]] = {
    **{m: {"selection": False, "rescale_lr": False, "keep_fraction": False, "negatives": False} for m in RSN2_TRANSFER},
    **{m: {"retrain_epochs": False} for m in PACKNET_READS_EARLIER},
    "ewc": {"lambda": False, "fisher_samples": False},
    "finetune": {},
    "joint": {},
    "stl": {},
}
_PUBLISHED = {"source": True, "acc": True}


@dataclass(frozen=True)
class StreamConfig:
    """Which tasks, in order: ``kind`` (permuted | split), the dataset, how many tasks / classes each."""

    kind: str
    dataset: str
    tasks: int | None = None
    classes_per_task: int | None = None


@dataclass(frozen=True)
class TrainingSettings:
    """The settings every method trains each task with (one stage per task)."""

    batch_size: int = 64
    epochs: int = 5
    lr: float = 1e-3
    optimizer: str = "adam"
    val_fraction: float = 0.1

    def train_config(self, seed: int, **overrides: Any) -> TrainConfig:
        """A :class:`TrainConfig` that trains ``epochs`` epochs and keeps the epoch with the lowest
        validation loss (patience = epochs, so early stopping never ends a stage sooner)."""
        settings: dict[str, Any] = {
            "batch_size": self.batch_size,
            "max_epochs": self.epochs,
            "patience": self.epochs,
            "min_delta": 0.0,
            "lr": self.lr,
            "optimizer": self.optimizer,
            "val_fraction": self.val_fraction,
            "seed": seed,
            "progress": False,
        }
        return TrainConfig(**{**settings, **overrides})


def stage_seed(seed: int, stage: int) -> int:
    """The seed of stage ``stage`` of a run seeded ``seed`` (validation split, batch order, selection)."""
    return seed * 1000 + stage


@dataclass(frozen=True)
class BenchmarkConfig:
    """A validated benchmark file."""

    name: str
    title: str
    stream: StreamConfig
    network: NetworkChoice
    """A named network (``kind``, with its options) or the user's ``nn.Module`` (``module``)."""
    keep_fraction: float
    training: TrainingSettings
    methods: dict[str, dict[str, Any]]
    published_source: str | None = None
    published_acc: dict[str, float] = field(default_factory=dict)
    source: str = ""

    def selection_config(self, method: str = "rsn2") -> SelectionConfig:
        """The selection settings of rsn2 method ``method`` (``rsn2``, ``rsn2-select``, ``rsn2-all``):
        the file's ``methods.<method>.selection`` over rsn2's defaults, with the method's transfer."""
        given = self.methods.get(method, {}).get("selection", {})
        return SelectionConfig(**given, transfer=RSN2_TRANSFER[method])

    def _network_record(self) -> dict[str, Any]:
        """The network as results files record it (a named network always with ``hidden``, empty for
        the fixed-width ones, so the records of earlier runs still match)."""
        if self.network.kind is None:
            return self.network.to_dict()
        return {"kind": self.network.kind, "hidden": list(self.network.options.get("hidden", ()))}

    def to_dict(self) -> dict[str, Any]:
        """What a results file records of the benchmark it ran."""
        return {
            "name": self.name,
            "title": self.title,
            "stream": vars(self.stream),
            "network": self._network_record(),
            "keep_fraction": self.keep_fraction,
            "training": vars(self.training),
            "methods": self.methods,
        }


def load_benchmark_config(path: str | os.PathLike[str]) -> BenchmarkConfig:
    """Read and validate a benchmark file; :class:`ConfigError` names the file and the bad key."""
    path = Path(path)
    data = read_yaml_file(path, "a benchmark file")
    try:
        return parse_benchmark_config(data, source=str(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse_benchmark_config(data: Any, source: str = "") -> BenchmarkConfig:
    """Validate the mapping of a benchmark file."""
    top = require_mapping(data, "the file")
    check_keys(top, _TOP, "the file")
    stream = _stream(require_mapping(top["stream"], "stream"))
    network = parse_network(top["network"], "network", forms=("kind", "module"))
    if stream.kind == "permuted" and not network.flat:
        raise ConfigError(
            "a permuted stream shuffles pixels, which only a network reading flat vectors reads as intended "
            "(kind: mlp or fc-a, or a module with a flat input_shape such as [784])"
        )
    try:
        keep = check_keep_fraction(top["keep_fraction"], "keep_fraction")
    except RSN2Error as exc:
        raise ConfigError(str(exc)) from None
    training = _training(require_mapping(top.get("training") or {}, "training"))
    methods = _methods(require_mapping(top["methods"], "methods"))
    source_text, acc = None, {}
    if "published" in top:
        pub = require_mapping(top["published"], "published")
        check_keys(pub, _PUBLISHED, "published")
        source_text = str(pub["source"])
        for k, v in require_mapping(pub["acc"], "published.acc").items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"published.acc.{k} must be a number (percent), got {v!r}")
            acc[str(k)] = float(v)
    return BenchmarkConfig(
        str(top["name"]),
        str(top["title"]),
        stream,
        network,
        keep,
        training,
        methods,
        source_text,
        acc,
        source,
    )


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _stream(raw: Any) -> StreamConfig:
    check_keys(raw, _STREAM, "stream")
    kind = require_choice(raw["kind"], STREAM_KINDS, "stream.kind")
    dataset = require_choice(raw["dataset"], STREAM_DATASETS, "stream.dataset")
    for key in ("tasks", "classes_per_task"):
        if key in raw and not _positive_int(raw[key]):
            raise ConfigError(f"stream.{key} must be a positive integer, got {raw[key]!r}")
    if kind == "permuted" and "tasks" not in raw:
        raise ConfigError("stream: a permuted stream needs 'tasks'")
    if (kind == "rotation") != (dataset == "omniglot"):
        raise ConfigError("stream: Omniglot runs as kind rotation (Omniglot Rotation), and only Omniglot does")
    if kind == "split" and "classes_per_task" not in raw:
        raise ConfigError("stream: a split stream needs 'classes_per_task'")
    return StreamConfig(kind, dataset, raw.get("tasks"), raw.get("classes_per_task"))


def _training(raw: Any) -> TrainingSettings:
    check_keys(raw, _TRAINING, "training")
    if "optimizer" in raw:
        require_choice(raw["optimizer"], OPTIMIZERS, "training.optimizer")
    try:
        settings = TrainingSettings(**raw)
        settings.train_config(seed=0)
    except (RSN2Error, TypeError) as exc:
        raise ConfigError(f"training: {exc}") from None
    return settings


def _methods(raw: Any) -> dict[str, dict[str, Any]]:
    if not raw:
        raise ConfigError(f"methods: name at least one of {list(METHODS)}")
    out: dict[str, dict[str, Any]] = {}
    for name, options in raw.items():
        require_choice(name, METHODS, "methods")
        opts = require_mapping(options or {}, f"methods.{name}")
        check_keys(opts, _METHOD_OPTIONS[name], f"methods.{name}")
        if name in RSN2_TRANSFER:
            selection = require_mapping(opts.get("selection") or {}, f"methods.{name}.selection")
            if "transfer" in selection:
                raise ConfigError(
                    f"methods.{name}.selection: the method names its transfer; run rsn2 (none), rsn2-select "
                    "or rsn2-all instead of setting transfer"
                )
            try:
                SelectionConfig(**selection)
                TrainConfig(rescale_lr=opts.get("rescale_lr"), negatives=opts.get("negatives", 0.0))
                if "keep_fraction" in opts:
                    check_keep_fraction(opts["keep_fraction"], f"methods.{name}.keep_fraction")
            except (RSN2Error, TypeError) as exc:
                raise ConfigError(f"methods.{name}: {exc}") from None
        if name in PACKNET_READS_EARLIER and "retrain_epochs" in opts and not _positive_int(opts["retrain_epochs"]):
            raise ConfigError(
                f"methods.{name}.retrain_epochs must be a positive integer, got {opts['retrain_epochs']!r}"
            )
        if name == "ewc":
            lam = opts.get("lambda", 1.0)
            if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
                raise ConfigError(f"methods.ewc.lambda must be a number >= 0, got {lam!r}")
            if "fisher_samples" in opts and not _positive_int(opts["fisher_samples"]):
                raise ConfigError(
                    f"methods.ewc.fisher_samples must be a positive integer, got {opts['fisher_samples']!r}"
                )
        out[str(name)] = dict(opts)
    return out
