"""The isolation guarantee: a training stage changes only its own subnetworks, bit for bit.

Masked forwards already give frozen positions a zero gradient, but optimizers can still move them
(Adam/SGD momentum carried over, weight decay that acts on every entry). :class:`IsolationGuard`
therefore (1) zeroes gradients outside the trainable positions with a tensor hook and (2) snapshots
every guarded parameter before each optimizer step and writes the frozen entries back after it.
Whatever the optimizer does, frozen entries end each step exactly as they began.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle

from rsn2.network.model import MultitaskNetwork


def trainable_masks(
    network: MultitaskNetwork, subnetworks: Iterable[str], tasks: Iterable[str]
) -> dict[nn.Parameter, Tensor | bool]:
    """For every parameter of ``network``: which entries a stage training ``subnetworks`` may change.

    A bool tensor (kernel positions owned by a trainable subnetwork) or a plain bool (biases,
    embeddings: wholly trainable or wholly frozen). ``tasks`` own their non-multitask modules.
    """
    subnetworks, tasks = set(subnetworks), set(tasks)
    masks: dict[nn.Parameter, Tensor | bool] = {}
    for _, layer in network.multitask_layers():
        ids = [i for i, n in enumerate(layer.subnetworks) if n in subnetworks]
        if not ids:
            masks[layer.weight] = False
        elif len(ids) == 1:
            masks[layer.weight] = layer.owner == ids[0]
        else:
            masks[layer.weight] = torch.isin(
                layer.owner, torch.tensor(ids, dtype=torch.uint8, device=layer.owner.device)
            )
        for name, bias in layer.biases.items():
            masks[bias] = name in subnetworks
    for task in network.task_names:
        for _, module in network.task_modules(task):
            for p in module.parameters():
                masks[p] = task in tasks
    return masks


def stage_parameters(masks: dict[nn.Parameter, Tensor | bool]) -> list[nn.Parameter]:
    """The parameters with at least one trainable entry (what a stage's optimizer should get)."""
    return [p for p, m in masks.items() if (m if isinstance(m, bool) else bool(m.any()))]


class IsolationGuard:
    """Keeps every non-trainable entry of an optimizer's parameters bit-identical across steps.

    Use as a context manager around a stage's training::

        with IsolationGuard(masks, optimizer):
            ...  # loss.backward(); optimizer.step()
    """

    def __init__(self, masks: dict[nn.Parameter, Tensor | bool], optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self._guarded: list[tuple[nn.Parameter, Tensor | bool]] = []
        for group in optimizer.param_groups:
            for p in group["params"]:
                m = masks.get(p, False)
                if m is True or (not isinstance(m, bool) and bool(m.all())):
                    continue  # wholly trainable: nothing to protect
                self._guarded.append((p, m))
        self._snapshots: list[Tensor] = []
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> IsolationGuard:
        for p, m in self._guarded:
            if isinstance(m, bool):
                self._handles.append(p.register_hook(lambda g: torch.zeros_like(g)))
            else:
                self._handles.append(p.register_hook(lambda g, m=m: g * m))
        self._handles.append(self.optimizer.register_step_pre_hook(self._snapshot))
        self._handles.append(self.optimizer.register_step_post_hook(self._restore))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._snapshots.clear()

    def _snapshot(self, *_: Any) -> None:
        self._snapshots = [p.detach().clone() for p, _ in self._guarded]

    def _restore(self, *_: Any) -> None:
        with torch.no_grad():
            for (p, m), saved in zip(self._guarded, self._snapshots, strict=True):
                if isinstance(m, bool):
                    p.copy_(saved)
                else:
                    torch.where(m, p, saved, out=p)
        self._snapshots = []
