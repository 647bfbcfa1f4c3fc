"""From an experiment config to its networks: architecture or the user's module, per-dataset inputs,
adapters, heads; the multitask network and the dense controls."""

from __future__ import annotations

from torch import nn

from rsn2.errors import ConfigError, SpecError
from rsn2.experiments.config import ExperimentConfig, TaskConfig
from rsn2.network.architectures import dense_head
from rsn2.network.convert import multitask
from rsn2.network.dense_control import dense_control
from rsn2.network.factory import module_named_by_file, output_width
from rsn2.network.model import MultitaskNetwork
from rsn2.network.registry import NETWORKS, Trunk
from rsn2.network.spec import (
    NetworkSpec,
    SharedSubnetwork,
    TaskSpec,
    conv2d,
    embedding,
    flatten,
    linear,
    relu,
)

IMDB_VOCAB = 10_000
IMDB_LENGTH = 128
IMDB_EMBEDDING = 2

OUTPUTS = {
    "mnist": 10,
    "fashion-mnist": 10,
    "fashion-mnist-easy": 5,
    "fashion-mnist-hard": 5,
    "cifar-10": 10,
    "boston": 1,
    "imdb": 2,
    "utkface-age": 10,
    "utkface-gender": 2,
    "utkface-race": 5,
}
"""Number of outputs of each dataset's head (1 = regression)."""


def named_trunk(config: ExperimentConfig) -> Trunk:
    """The trunk of an experiment on a named network, with the file's options."""
    return NETWORKS[config.architecture].trunk(**config.network_options)


def task_spec(config: ExperimentConfig, task: TaskConfig) -> TaskSpec:
    """The task's input shape, adapter and head on the experiment's named network (docs/method.md,
    "Network structure" and "Architectures"; docs/experiments.md)."""
    architecture = config.architecture
    d, network, trunk = task.dataset, NETWORKS[architecture], named_trunk(config)
    width = trunk.width
    kind = "regression" if d == "boston" else "classification"
    head = dense_head(width, OUTPUTS[d])
    keep = task.keep_fraction
    mnist_like = d.startswith("mnist") or d.startswith("fashion-mnist")
    if network.flat and network.input_shape == (784,):
        if mnist_like:
            return TaskSpec(task.name, kind, (784,), head, keep_fraction=keep)
        if d == "boston":  # Boston's 13 features reach the trunk's 784 through its own (pruned) dense layer
            return TaskSpec(task.name, kind, (13,), head, adapter=(linear(13, 784), relu()), keep_fraction=keep)
        if d == "imdb":  # its own embedding (never pruned) and its own first dense layer replace trunk layer 0
            adapter = (
                embedding(IMDB_VOCAB + 2, IMDB_EMBEDDING),
                flatten(),
                linear(IMDB_LENGTH * IMDB_EMBEDDING, trunk.layers[0].params["out_features"]),
                relu(),
            )
            return TaskSpec(task.name, kind, (IMDB_LENGTH,), head, adapter=adapter, enter_at=2, keep_fraction=keep)
    if architecture == "conv-a":
        if mnist_like:
            return TaskSpec(task.name, kind, (1, 28, 28), head, keep_fraction=keep)
        if d == "cifar-10":  # its own first conv for 3 channels replaces the trunk's first conv
            return TaskSpec(
                task.name, kind, (3, 28, 28), head, adapter=(conv2d(3, 32, 3),), enter_at=1, keep_fraction=keep
            )
    if architecture == "conv-b" and (d == "cifar-10" or d.startswith("utkface")):
        return TaskSpec(task.name, kind, (3, 32, 32), head, keep_fraction=keep)
    raise ConfigError(f"task {task.name!r}: dataset {d!r} is not supported on {architecture}")


def dataset_shape(dataset: str, config: ExperimentConfig) -> tuple[int, ...]:
    """One sample's shape of ``dataset`` as :func:`~rsn2.experiments.load_tasks.load_datasets` loads it
    for ``config`` (MNIST-like images flat when the module takes vectors, CIFAR-10 at its size)."""
    flat = len(config.input_shape) == 1
    if dataset.startswith("mnist") or dataset.startswith("fashion-mnist"):
        return (784,) if flat else (1, 28, 28)
    if dataset == "cifar-10":
        size = config.input_shape[-1] if len(config.input_shape) == 3 else 32
        return (3, size, size)
    if dataset.startswith("utkface"):
        return (3, 32, 32)
    return (13,) if dataset == "boston" else (IMDB_LENGTH,)


def fresh_module(config: ExperimentConfig) -> nn.Module:
    """A new instance of the experiment's module (imported from the experiment file's folder first)."""
    assert config.module is not None
    return module_named_by_file(config.module, config.source)


def _module_spec(config: ExperimentConfig) -> NetworkSpec:
    """The tasks of an experiment on the user's module: each a dense head after the module, its
    dataset's samples of the module's ``input_shape`` (IMDB's as token ids)."""
    module = fresh_module(config)
    tasks = []
    for t in config.tasks:
        shape, tokens = dataset_shape(t.dataset, config), t.dataset == "imdb"
        if shape != config.input_shape:
            raise ConfigError(
                f"task {t.name!r}: {t.dataset} samples have shape {list(shape)} but the module takes "
                f"network.input_shape {list(config.input_shape)}"
            )
        try:
            width = output_width(module, shape, token_input=tokens)
        except SpecError as exc:
            raise ConfigError(f"network.module {config.module!r}: {exc}") from None
        kind = "regression" if t.dataset == "boston" else "classification"
        head = dense_head(width, OUTPUTS[t.dataset])
        tasks.append(TaskSpec(t.name, kind, shape, head, keep_fraction=t.keep_fraction, token_input=tokens))
    kinds = {"conv": (nn.Conv1d, nn.Conv2d), "dense": (nn.Linear,)}
    shared = []
    for s in config.shared:
        keys = (
            ["body"]
            if s.layers == "all"
            else [f"body.{n}" for n, m in module.named_modules() if isinstance(m, kinds[s.layers])]
        )
        if not keys:
            raise ConfigError(f"shared {s.name!r}: the module has no {s.layers} layers to share")
        shared.append(SharedSubnetwork(s.name, s.tasks, keys, s.keep_fraction))
    return NetworkSpec((), tasks, shared)


def build_network(config: ExperimentConfig, spec: NetworkSpec) -> MultitaskNetwork:
    """The experiment's multitask network of ``spec`` (:func:`build_spec`), unselected."""
    if config.module is None:
        return MultitaskNetwork(spec)
    return multitask(fresh_module(config), spec.tasks, shared=spec.shared, inplace=True)


def build_control(config: ExperimentConfig, spec: NetworkSpec, task: str) -> MultitaskNetwork:
    """A ready-to-train dense model of ``task`` on the experiment's architecture or module."""
    return dense_control(spec, task, body=fresh_module(config) if config.module is not None else None)


def build_spec(config: ExperimentConfig) -> NetworkSpec:
    """The multitask network of an experiment, with its shared subnetworks resolved to trunk layers
    (or to the module's layers)."""
    if config.module is not None:
        return _module_spec(config)
    layers = named_trunk(config).layers
    tasks = tuple(task_spec(config, t) for t in config.tasks)
    shared = []
    for s in config.shared:
        wanted = {"conv": ("conv2d",), "dense": ("linear",), "all": ("conv2d", "linear")}[s.layers]
        enter = max(next(t for t in tasks if t.name == n).enter_at for n in s.tasks)
        indices = tuple(i for i, layer in enumerate(layers) if layer.kind in wanted and i >= enter)
        shared.append(SharedSubnetwork(s.name, s.tasks, indices, s.keep_fraction))
    return NetworkSpec(layers, tasks, tuple(shared))
