"""Dense controls: the same architecture as a plain single-task model, for side-by-side comparison."""

from __future__ import annotations

import torch

from rsn2.layers import MultitaskKernelLayer
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


def dense_control(spec: NetworkSpec, task: str) -> MultitaskNetwork:
    """A ready-to-train dense model of ``task``: its one subnetwork owns every position.

    Multitask layers whose only subnetwork owns everything run the plain dense kernel (no mask), so
    the control costs what an ``nn.Linear``/``nn.Conv2d`` model costs. Train it with the same
    :func:`rsn2.training.train_stage` as the multitask model.
    """
    net = MultitaskNetwork(dense_control_spec(spec, task))
    for step in net.path(task):
        layer = step.module
        if isinstance(layer, MultitaskKernelLayer) and step.subnetwork is not None:
            layer.add_subnetwork(step.subnetwork)
            layer.assign(step.subnetwork, torch.ones_like(layer.owner, dtype=torch.bool))
    return net
