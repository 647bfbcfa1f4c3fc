"""Checks on a network's ownership that can fail: every subnetwork owns what selection asked for, and
owner maps only grow (no position ever changes hands)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from rsn2.layers import FREE, MultitaskKernelLayer
from rsn2.layers.ownership import requested_positions
from rsn2.network.model import MultitaskNetwork


def owner_maps(network: MultitaskNetwork) -> dict[str, Tensor]:
    """A copy of every multitask layer's owner map, by layer key (to compare against later)."""
    return {key: layer.owner.detach().clone() for key, layer in network.multitask_layers()}


def ownership_problems(network: MultitaskNetwork, before: Mapping[str, Tensor] | None = None) -> list[str]:
    """What is wrong with ``network``'s subnetworks; an empty list when nothing is.

    - Every subnetwork on a selected task's path owns exactly the positions selection asks of its
      layer (``floor(keep_fraction * positions)``, at least 1; all of them for a subnetwork keeping its layer;
      owned and read together when it was selected with ``transfer="select"``).
    - A subnetwork reads (forward transfer) only positions of frozen subnetworks added before it,
      and only when it was selected with transfer.
    - With ``before`` (from :func:`owner_maps` earlier): no position owned then has another owner now.
    """
    problems: list[str] = []
    layers = dict(network.multitask_layers())
    expected: dict[tuple[str, str], int] = {}
    for task in network.task_names:
        for step in network.path(task):
            layer = step.module
            if step.subnetwork is None or not isinstance(layer, MultitaskKernelLayer):
                continue
            if step.subnetwork in layer.subnetworks and step.keep_fraction is not None:
                expected[(step.key, step.subnetwork)] = requested_positions(step.keep_fraction, layer.total_positions)
    for key, layer in layers.items():
        counts = layer.ownership()
        for name in layer.subnetworks:
            want = expected.get((key, name))
            reads = layer.reads(name)
            read = 0 if reads is None else int(reads.sum())
            transfer = network.selection_log.get(name, {}).get("transfer", "none")
            if want is None:
                problems.append(f"layer {key!r}: subnetwork {name!r} is on no task's path")
            elif transfer == "select" and counts[name] + read != want:
                problems.append(
                    f"layer {key!r}: subnetwork {name!r} owns {counts[name]} and reads {read} positions, "
                    f"selection asks {want} together"
                )
            elif transfer != "select" and counts[name] != want:
                problems.append(
                    f"layer {key!r}: subnetwork {name!r} owns {counts[name]} positions, selection asks {want}"
                )
            if reads is not None:
                if transfer == "none":
                    problems.append(f"layer {key!r}: subnetwork {name!r} reads {read} positions but has no transfer")
                outside = int((reads & ~layer.readable_positions(name)).sum())
                if outside:
                    problems.append(
                        f"layer {key!r}: subnetwork {name!r} reads {outside} position(s) that no frozen "
                        "subnetwork added before it owns"
                    )
        if before is not None and key in before:
            old = before[key].to(layer.owner.device)
            moved = int(((old != FREE) & (layer.owner != old)).sum())
            if moved:
                problems.append(f"layer {key!r}: {moved} position(s) owned before now have another owner or none")
    if before is not None:
        gone = sorted(set(before) - set(layers))
        if gone:
            problems.append(f"layer(s) {gone} are gone")
    return problems
