"""The networks of a benchmark, for every method alike: a named trunk of rsn2 layer specs
(:data:`rsn2.network.registry.NETWORKS`) or the user's own ``nn.Module`` made multitask, with one head
per task."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from rsn2.continual.config import BenchmarkConfig
from rsn2.continual.streams import ContinualTask
from rsn2.errors import ConfigError, SpecError
from rsn2.network.architectures import dense_head
from rsn2.network.convert import multitask
from rsn2.network.dense_control import dense_control
from rsn2.network.factory import module_named_by_file, output_width
from rsn2.network.model import MultitaskNetwork
from rsn2.network.spec import LayerSpec, NetworkSpec, SharedSubnetwork, TaskSpec

SHARED = "shared"
"""Name of the one subnetwork every task reads in the baselines' networks."""


def flat_inputs(config: BenchmarkConfig) -> bool:
    """Whether the benchmark's network reads flat ``(N, D)`` inputs rather than images."""
    return config.network.flat


@dataclass(frozen=True)
class BenchmarkNetwork:
    """What every method builds its networks from, for tasks taking ``input_shape``.

    ``trunk`` (rsn2 layer specs) or, for ``network: {module: ...}``, a fresh instance of the user's
    module per network; ``width``: the features the trunk or module outputs per sample.
    """

    config: BenchmarkConfig
    input_shape: tuple[int, ...]
    trunk: tuple[LayerSpec, ...]
    width: int

    @classmethod
    def of(cls, config: BenchmarkConfig, input_shape: tuple[int, ...]) -> BenchmarkNetwork:
        """The benchmark's network for inputs of ``input_shape`` (one sample)."""
        network = config.network
        if network.module is not None:
            if network.input_shape != tuple(input_shape):
                raise ConfigError(
                    f"network.input_shape is {list(network.input_shape or ())} but the stream's samples have "
                    f"shape {list(input_shape)}"
                )
            try:
                width = output_width(_fresh_module(config), input_shape)
            except SpecError as exc:
                raise ConfigError(f"network.module {network.module!r}: {exc}") from None
            return cls(config, input_shape, (), width)
        try:
            trunk = network.trunk(input_shape)
        except SpecError as exc:
            raise ConfigError(str(exc)) from None
        return cls(config, input_shape, trunk.layers, trunk.width)

    def task_spec(self, task: ContinualTask, keep_fraction: float | None = None) -> TaskSpec:
        """``task`` as an rsn2 task: a classification head of its own (one dense layer, never pruned)."""
        return TaskSpec(
            task.name,
            "classification",
            task.input_shape,
            head=dense_head(self.width, len(task.classes)),
            keep_fraction=self.config.keep_fraction if keep_fraction is None else keep_fraction,
            classes=tuple(task.classes),
        )

    def new(self, tasks: Sequence[TaskSpec], shared: Sequence[SharedSubnetwork] = ()) -> MultitaskNetwork:
        """A network of ``tasks`` (unselected); a module network needs at least one task."""
        if self.config.network.module is None:
            return MultitaskNetwork(NetworkSpec(self.trunk, tasks, shared))
        return multitask(_fresh_module(self.config), tasks, shared=shared, inplace=True)

    def grow(self, network: MultitaskNetwork | None, task: TaskSpec, transfer: str = "none") -> MultitaskNetwork:
        """``network`` with ``task`` added for a new stage (or a new network of ``task`` when None), to be
        selected with ``transfer``. :class:`~rsn2.errors.CapacityError` when it does not fit, ``network``
        unchanged."""
        if network is None:
            return self.new([task])
        network.add_tasks([task], transfer=transfer)
        return network

    def shared_by_all(self, tasks: Sequence[ContinualTask]) -> MultitaskNetwork:
        """Every task reading one dense subnetwork (:data:`SHARED`) in every trunk (or module) layer,
        each with its own head: the network of the fine-tuning, EWC and joint baselines."""
        specs = [self.task_spec(t, keep_fraction=1.0) for t in tasks]
        if len(specs) < 2:
            return self.new(specs)
        names = [t.name for t in tasks]
        if self.config.network.module is not None:
            return self.new(specs, [SharedSubnetwork(SHARED, names, ["body"], 1.0)])
        layers = [i for i, layer in enumerate(self.trunk) if layer.is_multitask]
        return self.new(specs, [SharedSubnetwork(SHARED, names, layers, 1.0)])

    def dense(self, task: ContinualTask) -> MultitaskNetwork:
        """A ready-to-train dense single-task model of ``task`` (the STL baseline)."""
        spec = self.task_spec(task)
        body = _fresh_module(self.config) if self.config.network.module is not None else None
        return dense_control(NetworkSpec(self.trunk, (spec,)), task.name, body=body)


def _fresh_module(config: BenchmarkConfig) -> nn.Module:
    """A new instance of the benchmark's module (imported from the benchmark file's folder first)."""
    assert config.network.module is not None
    return module_named_by_file(config.network.module, config.source)
