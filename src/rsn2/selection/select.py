"""RSN2 (paper Algorithm 1, docs/method.md, "Selection"): one-shot selection of disjoint subnetworks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from rsn2.errors import CapacityError, FrozenSubnetworkError, TaskError
from rsn2.layers import MultitaskKernelLayer, PerSubnetwork
from rsn2.layers.ownership import requested_positions
from rsn2.network.model import MultitaskNetwork
from rsn2.selection.config import SelectionConfig
from rsn2.selection.importance import Importance, Slot, importance_by_name, slot_seed
from rsn2.selection.rescaling import reinitialise_kept, rescale_kept
from rsn2.selection.topk import compute_input_balanced_mask, compute_mask, compute_row_balanced_mask


@dataclass
class SelectionReport:
    """What a selection did: positions and fraction kept per (layer, subnetwork)."""

    method: str
    rescaled: bool
    allocation: str = "global"
    rescale: str = "layer"
    reinit: bool = False
    kept: dict[Slot, int] = field(default_factory=dict)
    """Positions each new subnetwork owns (trains), per slot."""
    fraction: dict[Slot, float] = field(default_factory=dict)
    """``kept`` over the layer's positions."""
    read: dict[Slot, int] = field(default_factory=dict)
    """Positions of frozen subnetworks each new one reads (forward transfer), where it reads any."""


def select_subnetworks(
    network: MultitaskNetwork,
    tasks: Sequence[str],
    samples: Mapping[str, tuple[Tensor, Tensor]] | None = None,
    selection: SelectionConfig | None = None,
    *,
    seed: int = 0,
    method: str | Importance | None = None,
    rescale: bool | str | None = None,
    allocation: str | None = None,
    reinit: bool | None = None,
) -> SelectionReport:
    """Carve out the subnetworks of ``tasks`` (in that order) from the free positions.

    For every multitask layer on a task's path where the task's subnetwork does not exist yet, keep
    ``floor(keep_fraction * layer positions)`` (at least 1: :func:`~rsn2.layers.ownership.requested_positions`)
    of the free positions with the highest importance
    (``|gradient|`` of the task's loss on its sample batch for ``method="gradient"``). Tasks joined by
    a new shared subnetwork are scored together.

    ``selection`` (default :class:`~rsn2.selection.SelectionConfig`) holds the settings; ``method``,
    ``rescale``, ``allocation`` and ``reinit`` given here override its fields. Options beside the
    paper's procedure (``allocation="global", rescale=False, reinit=False``):

    - ``allocation="row_balanced"``: every output unit (row of a linear kernel, filter of a conv)
      keeps the same number of its inputs (within one), the highest-importance free ones of its row,
      so that no unit of the subnetwork is left without inputs (:func:`compute_row_balanced_mask`).
    - ``rescale``: ``True``/``"layer"`` multiplies the kept weights by ``1/sqrt(f)``, ``f`` the
      fraction of the layer kept (variance-preserving; docs/method.md, "Rescaling kept weights");
      ``"unit"`` by ``1/sqrt(f_r)``, ``f_r`` the fraction of its own row a unit keeps;
      ``False``/``"none"`` keeps the initial values (the paper's plain carve-out).
    - ``reinit`` (default on): the kept weights are drawn anew (the layer's Glorot-uniform range, from a
      generator seeded by ``seed`` and the slot) before rescaling; subnetworks keeping their whole
      layer (heads, dense controls) keep their initial weights. Free weights were never trained, so this
      costs earlier tasks nothing; it decorrelates a subnetwork's values from the ranking that chose it.

    Raises:
        CapacityError: a layer has fewer free positions than requested; names the layer, the request
            and the free capacity. Nothing is changed.
        FrozenSubnetworkError / TaskError: unknown task, or a task whose own parts are already selected.
    """
    given: dict[str, Any] = {"method": method, "rescale": rescale, "allocation": allocation, "reinit": reinit}
    selection = replace(selection or SelectionConfig(), **{k: v for k, v in given.items() if v is not None})
    transfer = selection.transfer
    importance = (
        importance_by_name(selection.method, seed, transfer=transfer != "none")
        if isinstance(selection.method, str)
        else selection.method
    )
    rescale_mode, allocation, reinit = selection.rescale_mode, selection.allocation, selection.reinit
    tasks = list(dict.fromkeys(tasks))
    for t in tasks:
        network.task_spec(t)  # raises TaskError for unknown names
        if network.is_selected(t):
            raise FrozenSubnetworkError(f"task {t!r} already has its subnetworks selected")
    if importance.name == "gradient":
        missing = [t for t in tasks if samples is None or t not in samples]
        if missing:
            raise TaskError(f"gradient selection needs a sample batch (x, y) for task(s) {missing}")

    layers = dict(network.multitask_layers())
    slot_groups = _slot_groups(network, tasks, layers)
    _check_capacity(slot_groups, layers, transfer)

    report = SelectionReport(
        method=importance.name,
        rescaled=rescale_mode != "none",
        allocation=allocation,
        rescale=rescale_mode,
        reinit=reinit,
    )
    added: list[tuple[MultitaskKernelLayer | PerSubnetwork, str]] = []
    saved_weights = {
        key: layers[key].weight.detach().clone() for key in {k for group in slot_groups for k, _, _ in group}
    }
    try:
        for t in tasks:  # every per-subnetwork layer on the path gets its copy (a norm's affine, statistics)
            for step in network.path(t):
                copies = step.module
                if isinstance(copies, PerSubnetwork) and step.subnetwork not in copies.subnetworks:
                    assert step.subnetwork is not None
                    copies.add_subnetwork(step.subnetwork)
                    added.append((copies, step.subnetwork))
        for group in slot_groups:
            for key, name, _ in group:
                if name not in layers[key].subnetworks:
                    layers[key].add_subnetwork(name)
                    added.append((layers[key], name))
            group_tasks = [t for t in tasks if any(name in network.subnetworks_of([t]) for _, name, _ in group)]
            slots = [(key, name) for key, name, _ in group]
            readable = {key: _readable(layers[key], transfer) for key, _, _ in group}
            needs_scores = any(
                requested_positions(keep, layers[key].total_positions)
                < layers[key].free_capacity + (int(readable[key].sum()) if transfer == "select" else 0)
                for key, _, keep in group
            )
            scores = importance(network, group_tasks, samples or {}, slots) if needs_scores else {}
            for key, name, keep in group:
                layer = layers[key]
                count = requested_positions(keep, layer.total_positions)
                score = scores.get((key, name), torch.zeros_like(layer.weight))
                free = layer.free_mask
                candidates = free | readable[key] if transfer == "select" else free
                if allocation in ("row_balanced", "input_balanced"):
                    balanced = (
                        compute_row_balanced_mask if allocation == "row_balanced" else compute_input_balanced_mask
                    )
                    try:
                        chosen = balanced(score, candidates, count)
                    except CapacityError as exc:
                        raise CapacityError(f"layer {key!r}: {exc}") from None
                else:
                    chosen = compute_mask(score, candidates, count)
                reads = readable[key] if transfer == "all" else chosen & readable[key]
                owned = chosen & free
                layer.assign(name, owned)
                layer.set_reads(name, reads)
                if keep < 1.0:  # a subnetwork keeping its whole layer (a head, a dense control) was not ranked
                    with torch.no_grad():
                        if reinit:
                            reinitialise_kept(layer.weight, owned, slot_seed(seed, (key, name), "reinit"))
                        rescale_kept(layer.weight, owned, rescale_mode, owned | reads if bool(reads.any()) else None)
                report.kept[(key, name)] = int(owned.sum())
                report.fraction[(key, name)] = int(owned.sum()) / layer.total_positions
                if bool(reads.any()):
                    report.read[(key, name)] = int(reads.sum())
    except BaseException:
        for added_to, name in reversed(added):
            added_to.remove_last_subnetwork(name)
        with torch.no_grad():
            for key, w in saved_weights.items():
                layers[key].weight.copy_(w)
        raise
    finally:
        network.zero_grad(set_to_none=True)
    for group in slot_groups:
        for _, name, _ in group:
            network.selection_log[name] = {
                "method": importance.name,
                "rescaled": rescale_mode != "none",
                "rescale": rescale_mode,
                "allocation": allocation,
                "reinit": reinit,
                **({"transfer": transfer} if transfer != "none" else {}),
            }
    return report


def _readable(layer: MultitaskKernelLayer, transfer: str) -> Tensor:
    """The positions a new subnetwork of ``layer`` may read under ``transfer``: every frozen
    subnetwork's (none for ``"none"``)."""
    if transfer == "none" or not layer.frozen:
        return torch.zeros_like(layer.owner, dtype=torch.bool)
    return layer.frozen_positions()


def _slot_groups(
    network: MultitaskNetwork, tasks: Sequence[str], layers: Mapping[str, MultitaskKernelLayer]
) -> list[list[tuple[str, str, float]]]:
    """Groups of new slots ``(layer key, subnetwork, keep)``, in selection order.

    Tasks connected through a new shared subnetwork form one group; otherwise each task is its own.
    """
    slots_of: dict[str, list[tuple[str, str, float]]] = {}
    for t in tasks:
        slots_of[t] = [
            (s.key, s.subnetwork, float(s.keep_fraction))  # type: ignore[arg-type]
            for s in network.path(t)
            if s.subnetwork is not None and s.key in layers and s.subnetwork not in layers[s.key].subnetworks
        ]
    shared_names = {t: {name for _, name, _ in slots_of[t] if name != t} for t in tasks}
    groups: list[list[str]] = []
    for t in tasks:
        joined = [g for g in groups if any(shared_names[t] & shared_names[u] for u in g)]
        groups = [g for g in groups if g not in joined] + [[t] + [u for g in joined for u in g]]
    groups.sort(key=lambda g: min(tasks.index(u) for u in g))
    out: list[list[tuple[str, str, float]]] = []
    for g in groups:
        ordered = sorted(g, key=tasks.index)
        seen: dict[tuple[str, str], tuple[str, str, float]] = {}
        for t in ordered:
            for slot in slots_of[t]:
                seen.setdefault((slot[0], slot[1]), slot)
        out.append(list(seen.values()))
    return out


def _check_capacity(
    slot_groups: list[list[tuple[str, str, float]]], layers: Mapping[str, MultitaskKernelLayer], transfer: str = "none"
) -> None:
    """Raise :class:`CapacityError` if any layer cannot hold everything requested of it (with
    ``transfer="select"``, each request may be met by free and frozen positions together)."""
    requested: dict[str, list[tuple[str, int]]] = {}
    for group in slot_groups:
        for key, name, keep in group:
            requested.setdefault(key, []).append((name, requested_positions(keep, layers[key].total_positions)))
    for key, asks in requested.items():
        free = layers[key].free_capacity
        if transfer == "select":
            readable = int(_readable(layers[key], transfer).sum())
            short = [(name, n) for name, n in asks if n > free + readable]
            if short:
                raise CapacityError(
                    f"layer {key!r} ({layers[key].total_positions} positions) cannot hold {short[0][0]!r}: "
                    f"{short[0][1]} positions asked but only {free} are free and {readable} frozen"
                )
            continue
        total = sum(n for _, n in asks)
        if total > free:
            detail = ", ".join(f"{name}: {n}" for name, n in asks)
            raise CapacityError(
                f"layer {key!r} ({layers[key].total_positions} positions) cannot hold the request: "
                f"{total} positions asked ({detail}) but only {free} are free "
                f"({free / layers[key].total_positions:.1%})"
            )
