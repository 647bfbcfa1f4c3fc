"""Experiment files: one small YAML file per experiment, validated on load.

Schema (keys not listed are refused)::

    name: exp3                       # identifier, used for output folders
    title: FC-A, MNIST + Fashion-MNIST trained together
    network: {kind: fc-a}            # fc-a | conv-a | conv-b | mlp (rsn2.network.registry); or your own
    # network: {module: "package.module:callable", input_shape: [1, 28, 28]}   nn.Module
    #                                  (imported from the file's folder first; it must output flat
    #                                  features; each task gets a dense head; every dataset's samples
    #                                  must have input_shape: [784] reads flattened MNIST-like images)
    tasks:                           # task name -> what it learns and how much it keeps
      mnist: {dataset: mnist, keep_fraction: 0.1}
      boston: {dataset: boston, keep_fraction: 0.1, batch_size: 32}
    stages: [[mnist, fashion], [boston]]   # "+" in the paper = one stage; every task exactly once
    shared:                          # optional: tasks sharing one subnetwork in chosen trunk layers
                                     # (of a module: its nn.Conv*, its nn.Linear, or all of it)
      - {name: utk, tasks: [age, gender, race], layers: conv, keep_fraction: 0.25}
    ensembles: {ensemble: [f0, f1]}  # optional: average softmax of subnetworks on the same dataset
    training: {batch_size: 512, patience: 3, min_delta: 0.01, lr: 0.001, optimizer: adam,
               val_fraction: 0.1, max_epochs: 100, rescale_lr: true, early_stopping: task,
               precision: auto, memory_format: auto}   # early_stopping: task | stage
    selection: {method: gradient, rescale: true, allocation: global, reinit: true, sample_size: null,
                transfer: none}      # transfer: none | select | all (forward transfer, docs/method.md)
                                     # rescale: true | false | layer | unit
                                     # allocation: global | row_balanced | input_balanced
    paper: {mnist: {multitask: 0.97, control: 0.97}}   # the paper's figures, for the report
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsn2.errors import CapacityError, ConfigError, RSN2Error, SpecError
from rsn2.io.yaml_file import read_yaml_file
from rsn2.keys import check_keys, require_choice, require_mapping
from rsn2.network.registry import parse_network
from rsn2.network.spec import check_keep_fraction
from rsn2.selection import SelectionConfig
from rsn2.training import OPTIMIZERS, TrainConfig

DATASETS = (
    "mnist",
    "fashion-mnist",
    "fashion-mnist-easy",
    "fashion-mnist-hard",
    "cifar-10",
    "boston",
    "imdb",
    "utkface-age",
    "utkface-gender",
    "utkface-race",
)
_TOP = {
    "name": True,
    "title": True,
    "network": True,
    "tasks": True,
    "stages": True,
    "shared": False,
    "ensembles": False,
    "training": False,
    "selection": False,
    "paper": False,
}
_TASK = {"dataset": True, "keep_fraction": True, "batch_size": False}
_TRAINING = {
    "batch_size",
    "patience",
    "min_delta",
    "min_delta_mode",
    "early_stopping",
    "lr",
    "optimizer",
    "val_fraction",
    "max_epochs",
    "weight_decay",
    "rescale_lr",
    "precision",
    "memory_format",
}
_SELECTION = {"method", "rescale", "allocation", "reinit", "sample_size", "transfer"}
_SHARED = {"name": True, "tasks": True, "layers": True, "keep_fraction": True}
_PAPER = {"multitask", "control"}


@dataclass(frozen=True)
class TaskConfig:
    """One task of an experiment."""

    name: str
    dataset: str
    keep_fraction: float
    batch_size: int | None = None


@dataclass(frozen=True)
class SharedConfig:
    """Tasks sharing one subnetwork; ``layers`` is ``"conv"``, ``"dense"`` or ``"all"`` trunk layers."""

    name: str
    tasks: tuple[str, ...]
    layers: str
    keep_fraction: float


@dataclass(frozen=True)
class ExperimentConfig:
    """A validated experiment file."""

    name: str
    title: str
    architecture: str
    """A named network (:data:`~rsn2.network.registry.NETWORKS`), or ``module`` (the user's ``nn.Module``
    of ``module``)."""
    tasks: tuple[TaskConfig, ...]
    stages: tuple[tuple[str, ...], ...]
    shared: tuple[SharedConfig, ...] = ()
    ensembles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    selection: Mapping[str, Any] = field(default_factory=dict)
    paper: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    source: str = ""
    module: str | None = None
    """``package.module:callable`` building a fresh module (``architecture == "module"``)."""
    input_shape: tuple[int, ...] = ()
    """One sample's shape as the module takes it (``architecture == "module"``)."""
    network_options: Mapping[str, Any] = field(default_factory=dict)
    """The named network's options (``mlp``'s ``hidden``), as :data:`~rsn2.network.registry.NETWORKS` takes them."""

    @property
    def network_name(self) -> str:
        """What reports call the network: the architecture, or the module's factory."""
        return self.module if self.module is not None else self.architecture

    def task(self, name: str) -> TaskConfig:
        return next(t for t in self.tasks if t.name == name)

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The stage training settings: docs/method.md's "Training settings" as defaults, then the file's,
        then ``overrides``."""
        return TrainConfig(**{**self.training, **overrides})

    def selection_config(self) -> SelectionConfig:
        """The file's ``selection`` settings over rsn2's defaults (:class:`~rsn2.selection.SelectionConfig`)."""
        return SelectionConfig(**self.selection)


def load_config(path: str | os.PathLike[str]) -> ExperimentConfig:
    """Read and validate an experiment file; raises :class:`ConfigError` naming the file and the bad key."""
    path = Path(path)
    data = read_yaml_file(path, "an experiment file")
    try:
        config = parse_config(data, source=str(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    _check_capacity(config, path)
    return config


def _check_capacity(config: ExperimentConfig, path: Path) -> None:
    """Build the experiment's network once (no data needed) so that tasks that can never fit together,
    or a module that does not take the datasets' samples, are refused here, before any data is read
    or folder made."""
    from rsn2.experiments.build import build_network, build_spec

    try:
        build_network(config, build_spec(config))
    except CapacityError as exc:
        raise ConfigError(f"{path}: the tasks do not fit in the network: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except SpecError as exc:
        raise ConfigError(f"{path}: network.module: {exc}") from None


def parse_config(data: Any, source: str = "") -> ExperimentConfig:
    """Validate the mapping of an experiment file."""
    top = require_mapping(data, "the file")
    if "architecture" in top:
        raise ConfigError(f"architecture: is the old spelling; write network: {{kind: {top['architecture']}}}")
    check_keys(top, _TOP, "the file")
    network = parse_network(top["network"], "network", forms=("kind", "module"))
    arch = network.kind or "module"
    module, input_shape = network.module, network.input_shape or ()
    tasks_map = require_mapping(top["tasks"], "tasks")
    if not tasks_map:
        raise ConfigError("tasks: at least one task is needed")
    tasks = []
    for name, raw in tasks_map.items():
        t = require_mapping(raw, f"tasks.{name}")
        check_keys(t, _TASK, f"tasks.{name}")
        batch = t.get("batch_size")
        if batch is not None and (not isinstance(batch, int) or batch < 1):
            raise ConfigError(f"tasks.{name}.batch_size must be a positive integer, got {batch!r}")
        tasks.append(
            TaskConfig(
                str(name),
                require_choice(t["dataset"], DATASETS, f"tasks.{name}.dataset"),
                _fraction(t["keep_fraction"], f"tasks.{name}.keep_fraction"),
                batch,
            )
        )
    names = [t.name for t in tasks]
    stages = _stages(top["stages"], names)
    shared = tuple(_shared(i, raw, names) for i, raw in enumerate(top.get("shared") or []))
    ensembles = {}
    for ens, members in require_mapping(top.get("ensembles") or {}, "ensembles").items():
        if not isinstance(members, list) or len(members) < 2 or any(m not in names for m in members):
            raise ConfigError(f"ensembles.{ens} must list at least two of the tasks {names}, got {members!r}")
        ensembles[str(ens)] = tuple(members)
    training = require_mapping(top.get("training") or {}, "training")
    check_keys(training, dict.fromkeys(_TRAINING, False), "training")
    if "optimizer" in training:
        require_choice(training["optimizer"], OPTIMIZERS, "training.optimizer")
    try:
        TrainConfig(**training)
    except (RSN2Error, TypeError) as exc:
        raise ConfigError(f"training: {exc}") from None
    selection = require_mapping(top.get("selection") or {}, "selection")
    check_keys(selection, dict.fromkeys(_SELECTION, False), "selection")
    try:
        SelectionConfig(**selection)
    except RSN2Error as exc:
        raise ConfigError(f"selection.{exc}") from None
    paper = {}
    for key, figures in require_mapping(top.get("paper") or {}, "paper").items():
        if key not in names and key not in ensembles:
            raise ConfigError(f"paper.{key}: not a task or ensemble of this experiment ({names + list(ensembles)})")
        fig = require_mapping(figures, f"paper.{key}")
        check_keys(fig, dict.fromkeys(_PAPER, False), f"paper.{key}")
        for k, v in fig.items():
            if not isinstance(v, (int, float)):
                raise ConfigError(f"paper.{key}.{k} must be a number, got {v!r}")
        paper[str(key)] = {k: float(v) for k, v in fig.items()}
    return ExperimentConfig(
        str(top["name"]),
        str(top["title"]),
        arch,
        tuple(tasks),
        stages,
        shared,
        ensembles,
        dict(training),
        dict(selection),
        paper,
        source,
        module,
        input_shape,
        dict(network.options),
    )


def _fraction(value: Any, where: str) -> float:
    try:
        return check_keep_fraction(value, where)
    except SpecError as exc:
        raise ConfigError(str(exc)) from None


def _stages(value: Any, names: list[str]) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, list) or not value or not all(isinstance(s, list) and s for s in value):
        raise ConfigError(f"stages must be a non-empty list of non-empty lists of task names, got {value!r}")
    flat = [t for s in value for t in s]
    unknown = sorted(set(flat) - set(names))
    if unknown:
        raise ConfigError(f"stages name unknown task(s) {unknown}; tasks: {names}")
    if sorted(flat) != sorted(names):
        raise ConfigError(f"stages must list every task exactly once; got {flat}, tasks: {names}")
    return tuple(tuple(s) for s in value)


def _shared(i: int, raw: Any, names: list[str]) -> SharedConfig:
    where = f"shared[{i}]"
    s = require_mapping(raw, where)
    check_keys(s, _SHARED, where)
    tasks = s["tasks"]
    if not isinstance(tasks, list) or len(tasks) < 2 or any(t not in names for t in tasks):
        raise ConfigError(f"{where}.tasks must list at least two of the tasks {names}, got {tasks!r}")
    layers = require_choice(s["layers"], ("conv", "dense", "all"), f"{where}.layers")
    return SharedConfig(str(s["name"]), tuple(tasks), layers, _fraction(s["keep_fraction"], f"{where}.keep_fraction"))
