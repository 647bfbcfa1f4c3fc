"""Dense controls: the same architecture as a plain single-task model, for side-by-side comparison."""

from __future__ import annotations

import torch
from torch import nn

from rsn2.layers import MultitaskKernelLayer, PerSubnetwork
from rsn2.network.convert import multitask
from rsn2.network.model import MultitaskNetwork
from rsn2.network.spec import NetworkSpec, TaskSpec


def dense_control_spec(spec: NetworkSpec, task: str) -> NetworkSpec:
    """``spec`` reduced to ``task`` alone, keeping every weight (no pruning, no sharing)."""
    t = spec.task(task)
    dense = TaskSpec(
        t.name,
        t.kind,
        t.input_shape,
        head=t.head,
        adapter=t.adapter,
        enter_at=t.enter_at,
        keep_fraction=1.0,
        prune_adapter=t.prune_adapter,
        prune_head=t.prune_head,
        classes=t.classes,
    )
    return NetworkSpec(spec.trunk, (dense,), ())


def dense_control(spec: NetworkSpec, task: str, body: nn.Module | None = None) -> MultitaskNetwork:
    """A ready-to-train dense model of ``task``: its one subnetwork owns every position.

    ``body``: a fresh instance of the user's module (for a network made by :func:`rsn2.multitask`;
    ``spec.trunk`` is then empty); it is converted in place.

    Multitask layers whose only subnetwork owns everything run the plain dense kernel (no mask), so
    the control costs what an ``nn.Linear``/``nn.Conv2d`` model costs. Train it with the same
    :func:`rsn2.training.train_stage` as the multitask model.
    """
    control = dense_control_spec(spec, task)
    if body is None:
        net = MultitaskNetwork(control)
    else:
        net = multitask(body, control.tasks, inplace=True)
    for step in net.path(task):
        layer = step.module
        if step.subnetwork is None:
            continue
        if isinstance(layer, MultitaskKernelLayer):
            layer.add_subnetwork(step.subnetwork)
            layer.assign(step.subnetwork, torch.ones_like(layer.owner, dtype=torch.bool))
        elif isinstance(layer, PerSubnetwork):
            layer.add_subnetwork(step.subnetwork)
    return net
