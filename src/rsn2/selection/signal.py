"""How much signal a selected subnetwork passes forward before training.

RSN2 gives each task the free positions with the largest |gradient|. When a stage's keep fractions add
up to a whole layer, the last task has no choice left: it gets the positions nobody scored highly,
which can include whole kernels of units that are dead (never positive) in the network the earlier
tasks were scored on. Its activations can start near zero even after rescaling. :func:`subnetwork_signal` measures that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from rsn2.devices import module_device
from rsn2.errors import SpecError
from rsn2.layers import MultitaskKernelLayer
from rsn2.network.model import MultitaskNetwork


@dataclass(frozen=True)
class LayerSignal:
    """The output of one ReLU on a task's path, over a batch.

    Attributes:
        key: the ReLU module's name (``trunk.1``, ``adapters.cifar.1``, ``body.layer1.0.relu``); a module
            run twice in one pass (a residual block's) is recorded each time, as ``key#2`` and on.
        active: share of activation values that are positive, in [0, 1].
        dead_units: share of units (channels for conv outputs) never positive on the batch, in [0, 1].
        std: standard deviation of the activation values.
    """

    key: str
    active: float
    dead_units: float
    std: float


@dataclass(frozen=True)
class SignalReport:
    """Every ReLU of a task's path in path order, the standard deviation of its outputs (logits), and
    per multitask layer on the path the share of the task's kept weights that are positive and the share
    of its output units (rows, filters) that keep no input at all (dead whatever the data)."""

    task: str
    layers: tuple[LayerSignal, ...]
    output_std: float
    positive_weights: dict[str, float] = field(default_factory=dict)
    empty_units: dict[str, float] = field(default_factory=dict)


def subnetwork_signal(network: MultitaskNetwork, task: str, x: Tensor) -> SignalReport:
    """Run ``task`` on the batch ``x`` (shape ``(N, *input_shape)``, ``N >= 2``) through its own
    subnetworks, recording each :class:`torch.nn.ReLU` module's output in the order they run. ``x``
    moves to the network's device. Eval mode, no gradient; the network is left as it was."""
    if x.shape[0] < 2:
        raise SpecError(f"subnetwork_signal needs a batch of at least 2 samples to measure spread, got {x.shape[0]}")
    x = x.to(module_device(network))
    was_training = network.training
    network.eval()
    layers = []
    positive: dict[str, float] = {}
    empty: dict[str, float] = {}
    for step in network.path(task):
        if isinstance(step.module, MultitaskKernelLayer) and step.subnetwork is not None:
            mask = step.module.reading_mask(step.subnetwork)  # its own positions and those it reads
            kept = step.module.kernel()[mask]
            positive[step.key] = float((kept > 0).float().mean()) if kept.numel() else 0.0
            empty[step.key] = float((~mask.reshape(mask.shape[0], -1).any(dim=1)).float().mean())
    seen: dict[str, int] = {}

    def record(key: str) -> Any:
        def hook(_: nn.Module, __: Any, out: Tensor) -> None:
            seen[key] = seen.get(key, 0) + 1
            layers.append(_measure(key if seen[key] == 1 else f"{key}#{seen[key]}", out))

        return hook

    handles = [m.register_forward_hook(record(k)) for k, m in network.named_modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            x = network(x, task)
    finally:
        for h in handles:
            h.remove()
        network.train(was_training)
    return SignalReport(task, tuple(layers), float(x.float().std()), positive, empty)


def _measure(key: str, activations: Tensor) -> LayerSignal:
    """Statistics of a ReLU output of shape ``(N, units, ...)``."""
    positive = activations > 0
    per_unit = positive.transpose(0, 1).reshape(activations.shape[1], -1).any(dim=1)
    return LayerSignal(
        key,
        float(positive.float().mean()),
        float((~per_unit).float().mean()),
        float(activations.float().std()),
    )
