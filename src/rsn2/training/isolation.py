"""The isolation guarantee: a training stage changes only its own subnetworks, bit for bit.

Masked forwards already give frozen positions a zero gradient, but optimizers can still move them
(Adam/SGD momentum carried over, weight decay that acts on every entry). :class:`IsolationGuard`
therefore (1) zeroes gradients outside the trainable positions with a tensor hook and (2) unless the
step provably leaves zero-gradient entries alone, snapshots the guarded parameters when the stage
starts and writes the frozen entries back after every optimizer step. Whatever the optimizer does,
frozen entries end each step exactly as they began.

"Provably": plain :class:`torch.optim.Adam` and :class:`torch.optim.SGD` without weight decay and
with no state carried in for the guarded parameters. Their moment (or momentum) buffers start at
zero and stay exactly zero where the gradient is zero, so the update there is exactly ``-0.0`` and
the entry keeps its bits. Skipping the write-back saves a pass over every guarded kernel per step
(measured in ``benchmarks``: it is most of the training step's overhead over a dense model).
This relies on the zeroed entries being exactly zero: the gradient hook selects the trainable
entries (:func:`rsn2.layers.select_owned`), so a NaN or inf gradient in a column the stage does not
own still leaves a frozen entry's gradient at 0, and :func:`rsn2.training.train_step` refuses a
non-finite loss before any backward pass or step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle

from rsn2.layers import select_owned
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
    for _, copies in network.per_subnetwork_layers():
        for name in copies.subnetworks:
            for p in copies.subnetwork_parameters(name):
                masks[p] = name in subnetworks
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

    def __init__(
        self, masks: dict[nn.Parameter, Tensor | bool], optimizer: Optimizer, restore: bool | None = None
    ) -> None:
        """``restore``: write frozen entries back after every step; None decides by :func:`needs_restore`."""
        self.optimizer = optimizer
        self._guarded: list[tuple[nn.Parameter, Tensor | bool]] = []
        for group in optimizer.param_groups:
            for p in group["params"]:
                m = masks.get(p, False)
                if m is True or (not isinstance(m, bool) and bool(m.all())):
                    continue  # wholly trainable: nothing to protect
                self._guarded.append((p, m))
        self.restore = needs_restore(optimizer, [p for p, _ in self._guarded]) if restore is None else restore
        self._snapshots: list[Tensor] = []
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> IsolationGuard:
        for p, m in self._guarded:
            if not p.requires_grad:  # frozen biases and task modules: never a gradient to mask
                continue
            if isinstance(m, bool):
                self._handles.append(p.register_hook(lambda g: torch.zeros_like(g)))
            else:  # a float multiply is ~10x cheaper than torch.where; select_owned falls back to it
                keep = m.to(p.dtype)  # only when a NaN/inf gradient entry would turn NaN * 0 into NaN
                self._handles.append(p.register_hook(lambda g, m=m, keep=keep: select_owned(g, m, keep)))
        if self.restore:
            self._snapshots = [p.detach().clone() for p, _ in self._guarded]
            self._handles.append(self.optimizer.register_step_post_hook(self._restore))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._snapshots.clear()

    def _restore(self, *_: Any) -> None:
        with torch.no_grad():
            for (p, m), saved in zip(self._guarded, self._snapshots, strict=True):
                if isinstance(m, bool):
                    p.copy_(saved)
                else:
                    torch.where(m, p, saved, out=p)


_ZERO_GRADIENT_SAFE = (torch.optim.Adam, torch.optim.SGD)


def needs_restore(optimizer: Optimizer, guarded: Iterable[nn.Parameter]) -> bool:
    """Whether an optimizer step may move entries whose gradient is exactly zero.

    False only for exact :class:`torch.optim.Adam` / :class:`torch.optim.SGD` instances with
    ``weight_decay == 0`` in every group and no state yet for any ``guarded`` parameter.
    """
    if type(optimizer) not in _ZERO_GRADIENT_SAFE:
        return True
    if any(group.get("weight_decay", 0) != 0 for group in optimizer.param_groups):
        return True
    return any(optimizer.state.get(p) for p in guarded)
