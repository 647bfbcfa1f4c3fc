"""Evaluating one task: mean loss and its metric (accuracy or mean squared error)."""

from __future__ import annotations

import torch
from torch import Tensor

from rsn2.devices import module_device
from rsn2.network.model import MultitaskNetwork
from rsn2.network.modes import evaluating
from rsn2.network.task_kinds import TASK_KINDS, task_kind

METRIC_NAMES = {name: kind.metric for name, kind in TASK_KINDS.items()}


def predict(network: MultitaskNetwork, task: str, x: Tensor, batch_size: int = 1024) -> Tensor:
    """The task's raw outputs on ``x``, computed in batches without gradient. Shape ``(N, outputs)``.

    Batches run on the network's device; the outputs come back on ``x``'s device.
    """
    device = module_device(network)
    with torch.no_grad(), evaluating(network):
        outs = [network(x[i : i + batch_size].to(device), task) for i in range(0, len(x), batch_size)]
        return torch.cat(outs).to(x.device)


def evaluate(network: MultitaskNetwork, task: str, x: Tensor, y: Tensor, batch_size: int = 1024) -> dict[str, float]:
    """``{"loss": mean loss, "metric": accuracy or MSE}`` of ``task`` on ``(x, y)``."""
    kind = task_kind(network.task_spec(task).kind)
    out = predict(network, task, x, batch_size)
    return {"loss": float(kind.loss(out, y)), "metric": kind.score(out, y)}
