"""From an experiment config to the network spec: architecture, per-dataset inputs, adapters, heads."""

from __future__ import annotations

from rsn2.errors import ConfigError
from rsn2.experiments.config import ExperimentConfig, TaskConfig
from rsn2.network.architectures import conv_a_trunk, conv_b_trunk, dense_head, fc_a_trunk
from rsn2.network.spec import (
    LayerSpec,
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

TRUNK_WIDTH = {"fc-a": 1000, "conv-a": 256, "conv-b": 128}


def trunk(architecture: str) -> tuple[LayerSpec, ...]:
    if architecture == "fc-a":
        return fc_a_trunk()
    if architecture == "conv-a":
        return conv_a_trunk(in_channels=1, image_size=28)
    return conv_b_trunk(in_channels=3, image_size=32)


def task_spec(architecture: str, task: TaskConfig) -> TaskSpec:
    """The task's input shape, adapter and head on ``architecture`` (SPEC sections 4, 6 and 7)."""
    d, width = task.dataset, TRUNK_WIDTH[architecture]
    kind = "regression" if d == "boston" else "classification"
    head = dense_head(width, OUTPUTS[d])
    keep = task.keep_fraction
    mnist_like = d.startswith("mnist") or d.startswith("fashion-mnist")
    if architecture == "fc-a":
        if mnist_like:
            return TaskSpec(task.name, kind, (784,), head, keep_fraction=keep)
        if d == "boston":  # Boston's 13 features reach the trunk's 784 through its own (pruned) dense layer
            return TaskSpec(task.name, kind, (13,), head, adapter=(linear(13, 784), relu()), keep_fraction=keep)
        if d == "imdb":  # its own embedding (never pruned) and its own first dense layer replace trunk layer 0
            adapter = (
                embedding(IMDB_VOCAB + 2, IMDB_EMBEDDING),
                flatten(),
                linear(IMDB_LENGTH * IMDB_EMBEDDING, width),
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


def build_spec(config: ExperimentConfig) -> NetworkSpec:
    """The multitask network of an experiment, with its shared subnetworks resolved to trunk layers."""
    layers = trunk(config.architecture)
    tasks = tuple(task_spec(config.architecture, t) for t in config.tasks)
    shared = []
    for s in config.shared:
        wanted = {"conv": ("conv2d",), "dense": ("linear",), "all": ("conv2d", "linear")}[s.layers]
        enter = max(next(t for t in tasks if t.name == n).enter_at for n in s.tasks)
        indices = tuple(i for i, layer in enumerate(layers) if layer.kind in wanted and i >= enter)
        shared.append(SharedSubnetwork(s.name, s.tasks, indices, s.keep_fraction))
    return NetworkSpec(layers, tasks, tuple(shared))
