"""Evaluating one task: mean loss and its metric (accuracy or mean squared error)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import accuracy_score, mean_squared_error
from torch import Tensor

from rsn2.devices import module_device
from rsn2.losses import task_loss
from rsn2.network.model import MultitaskNetwork

METRIC_NAMES = {"classification": "accuracy", "regression": "mse"}


def predict(network: MultitaskNetwork, task: str, x: Tensor, batch_size: int = 1024) -> Tensor:
    """The task's raw outputs on ``x``, computed in batches without gradient. Shape ``(N, outputs)``.

    Batches run on the network's device; the outputs come back on ``x``'s device.
    """
    was_training = network.training
    network.eval()
    device = module_device(network)
    try:
        with torch.no_grad():
            outs = [network(x[i : i + batch_size].to(device), task) for i in range(0, len(x), batch_size)]
            return torch.cat(outs).to(x.device)
    finally:
        network.train(was_training)


def evaluate(network: MultitaskNetwork, task: str, x: Tensor, y: Tensor, batch_size: int = 1024) -> dict[str, float]:
    """``{"loss": mean loss, "metric": accuracy or MSE}`` of ``task`` on ``(x, y)``."""
    kind = network.task(task).kind
    out = predict(network, task, x, batch_size)
    loss = float(task_loss(kind, out, y))
    out, y = out.cpu(), y.cpu()
    if kind == "classification":
        metric = float(accuracy_score(y.numpy(), out.argmax(dim=1).numpy()))
    else:
        metric = float(mean_squared_error(np.asarray(y.reshape(out.shape)), np.asarray(out)))
    return {"loss": loss, "metric": metric}
