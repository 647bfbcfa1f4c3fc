"""The networks of a benchmark: trunk and per-task heads as rsn2 specs, for every method alike."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rsn2.continual.config import BenchmarkConfig
from rsn2.continual.streams import ContinualTask
from rsn2.network.architectures import conv_a_trunk, conv_b_trunk, dense_head
from rsn2.network.spec import LayerSpec, NetworkSpec, SharedSubnetwork, TaskSpec, linear, relu


def mlp_trunk(in_features: int, hidden: Sequence[int]) -> tuple[LayerSpec, ...]:
    """Dense layers of the ``hidden`` widths with ReLU (784-100-100: ``mlp_trunk(784, [100, 100])``)."""
    layers: list[LayerSpec] = []
    width = in_features
    for h in hidden:
        layers += [linear(width, h), relu()]
        width = h
    return tuple(layers)


def benchmark_trunk(config: BenchmarkConfig, input_shape: tuple[int, ...]) -> tuple[tuple[LayerSpec, ...], int]:
    """The trunk the benchmark names, for inputs of ``input_shape``, and its output width."""
    if config.network == "mlp":
        return mlp_trunk(math.prod(input_shape), config.hidden), config.hidden[-1]
    channels, size = input_shape[0], input_shape[-1]
    if config.network == "conv-a":
        return conv_a_trunk(channels, size), 256
    return conv_b_trunk(channels, size), 128


def flat_inputs(config: BenchmarkConfig) -> bool:
    """Whether the benchmark's network reads flat ``(N, D)`` inputs (an MLP) rather than images."""
    return config.network == "mlp"


def task_spec(config: BenchmarkConfig, task: ContinualTask, width: int, keep_fraction: float | None = None) -> TaskSpec:
    """``task`` as an rsn2 task: a classification head of its own (one dense layer, never pruned)."""
    return TaskSpec(
        task.name,
        "classification",
        task.input_shape,
        head=dense_head(width, len(task.classes)),
        keep_fraction=config.keep_fraction if keep_fraction is None else keep_fraction,
        classes=tuple(task.classes),
    )


def shared_trunk_spec(config: BenchmarkConfig, tasks: Sequence[ContinualTask]) -> NetworkSpec:
    """Every task reading one dense subnetwork (``"shared"``) in every trunk layer, each with its own
    head: the network of the fine-tuning, EWC and joint baselines."""
    trunk, width = benchmark_trunk(config, tasks[0].input_shape)
    specs = [task_spec(config, t, width, keep_fraction=1.0) for t in tasks]
    layers = [i for i, layer in enumerate(trunk) if layer.is_multitask]
    if len(specs) < 2:
        return NetworkSpec(trunk, specs)
    return NetworkSpec(trunk, specs, (SharedSubnetwork("shared", [t.name for t in tasks], layers, 1.0),))
