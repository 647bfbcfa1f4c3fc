"""Importance scores that rank free positions for a new subnetwork.

An importance function returns, for every *slot* (a multitask layer key and a new subnetwork name),
a non-negative score tensor of the layer's kernel shape. Higher scores are kept first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Protocol

import torch
from torch import Tensor

from rsn2.devices import module_device
from rsn2.errors import SpecError, TaskError
from rsn2.layers import MultitaskKernelLayer, Route, routed
from rsn2.network.model import MultitaskNetwork
from rsn2.network.task_kinds import task_kind

Slot = tuple[str, str]
"""(multitask layer key, subnetwork name)."""


class Importance(Protocol):
    """Scores for the given slots; ``samples`` maps each of ``tasks`` to one ``(x, y)`` batch."""

    name: str

    def __call__(
        self,
        network: MultitaskNetwork,
        tasks: Sequence[str],
        samples: Mapping[str, tuple[Tensor, Tensor]],
        slots: Sequence[Slot],
    ) -> dict[Slot, Tensor]: ...


class GradientImportance:
    """RSN2 (paper Algorithm 1): ``|dL/dW|`` at the free positions, the rest scoring zero.

    Each task's loss is computed with the task reading, in every layer, its subnetwork's positions
    where that subnetwork already exists and all free positions where it is new (with ``transfer``,
    every frozen position too, at its frozen value: those are scored as well). A subnetwork shared
    by several tasks is scored by the gradient of the sum of their losses.
    """

    name = "gradient"

    def __init__(self, transfer: bool = False) -> None:
        self.transfer = transfer

    def __call__(
        self,
        network: MultitaskNetwork,
        tasks: Sequence[str],
        samples: Mapping[str, tuple[Tensor, Tensor]],
        slots: Sequence[Slot],
    ) -> dict[Slot, Tensor]:
        wanted = set(slots)
        layers = dict(network.multitask_layers())
        network_device = module_device(network)
        grads: dict[Slot, Tensor] = {}
        statistics = [b for _, layer in network.per_subnetwork_layers() for b in layer.copies.buffers()]
        saved = [b.detach().clone() for b in statistics]  # scoring runs in train mode: batch norms must not learn
        try:
            self._score(network, tasks, samples, wanted, network_device, grads, self.transfer)
        finally:
            with torch.no_grad():
                for b, value in zip(statistics, saved, strict=True):
                    b.copy_(value)
        return {
            slot: grads[slot].abs() if slot in grads else torch.zeros_like(layers[slot[0]].weight) for slot in slots
        }

    @staticmethod
    def _score(
        network: MultitaskNetwork,
        tasks: Sequence[str],
        samples: Mapping[str, tuple[Tensor, Tensor]],
        wanted: set[Slot],
        network_device: torch.device,
        grads: dict[Slot, Tensor],
        transfer: bool = False,
    ) -> None:
        """Add each task's ``dL/dW`` per wanted slot into ``grads``."""
        for task in tasks:
            if task not in samples:
                raise TaskError(f"gradient selection needs a sample batch for task {task!r}")
            x, y = samples[task]
            x, y = x.to(network_device), y.to(network_device)
            kernels = [
                step.module.weight for step in network.path(task) if isinstance(step.module, MultitaskKernelLayer)
            ]
            network.zero_grad(set_to_none=True)
            with torch.enable_grad():
                out = _candidate_forward(network, task, x, wanted, transfer)
                loss = task_kind(network.task_spec(task).kind).loss(out, y)
                per_kernel = torch.autograd.grad(loss, kernels, allow_unused=True)
            step_slots = [
                (s.key, s.subnetwork)
                for s in network.path(task)
                if s.subnetwork is not None and isinstance(s.module, MultitaskKernelLayer)
            ]
            for slot, g in zip(step_slots, per_kernel, strict=True):
                if slot in wanted and g is not None:
                    grads[slot] = grads[slot] + g if slot in grads else g.detach().clone()


def _candidate_forward(
    network: MultitaskNetwork, task: str, x: Tensor, new_slots: set[Slot], transfer: bool = False
) -> Tensor:
    """Forward of ``task`` where each new subnetwork reads all free positions of its layer (and, with
    ``transfer``, all frozen ones)."""
    route = network.route(task)
    new = frozenset(s.module for s in network.path(task) if (s.key, s.subnetwork) in new_slots)
    with routed(Route(task, route.subnetworks, new, new if transfer else frozenset())):
        return network(x)


class MagnitudeImportance:
    """Ablation: ``|W|`` at initialisation (no data needed)."""

    name = "magnitude"

    def __call__(
        self,
        network: MultitaskNetwork,
        tasks: Sequence[str],
        samples: Mapping[str, tuple[Tensor, Tensor]],
        slots: Sequence[Slot],
    ) -> dict[Slot, Tensor]:
        layers = dict(network.multitask_layers())
        return {slot: layers[slot[0]].weight.detach().abs() for slot in slots}


class RandomImportance:
    """Ablation: uniform random scores, reproducible for a seed and independent of the weights.

    Each slot draws from its own generator, seeded by a hash of ``(seed, layer key, subnetwork)``.
    A generator seeded with ``seed`` itself would replay the stream ``torch.manual_seed(seed)`` gave
    the initialisation: the scores would be the first kernel's weights up to an affine map, and a
    long sequence of tasks would hand out the largest weights first.
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def __call__(
        self,
        network: MultitaskNetwork,
        tasks: Sequence[str],
        samples: Mapping[str, tuple[Tensor, Tensor]],
        slots: Sequence[Slot],
    ) -> dict[Slot, Tensor]:
        layers = dict(network.multitask_layers())
        scores = {}
        for slot in slots:
            weight = layers[slot[0]].weight
            gen = torch.Generator().manual_seed(slot_seed(self.seed, slot, "random-scores"))
            scores[slot] = torch.rand(weight.shape, generator=gen).to(weight.device)
        return scores


def slot_seed(seed: int, slot: Slot, purpose: str) -> int:
    """A 63-bit generator seed for one ``purpose`` (random scores, re-initialisation) of ``slot``: a
    hash of the selection seed, the slot and the purpose, so that no plain ``torch.manual_seed``
    stream (nor another slot's or purpose's) shares it."""
    text = f"rsn2-selection:{purpose}:{seed}:{slot[0]}:{slot[1]}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


METHODS = ("gradient", "magnitude", "random")


def importance_by_name(method: str, seed: int = 0, transfer: bool = False) -> Importance:
    """The importance function called ``method`` (one of :data:`METHODS`); ``transfer``: the gradient
    is taken with new subnetworks reading the frozen positions too (they are candidates as well)."""
    if method == "gradient":
        return GradientImportance(transfer)
    if method == "magnitude":
        return MagnitudeImportance()
    if method == "random":
        return RandomImportance(seed)
    raise SpecError(f"unknown selection method {method!r}; allowed: {list(METHODS)}")
