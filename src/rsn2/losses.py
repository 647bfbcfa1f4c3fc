"""Per-task losses: cross-entropy for classification, mean squared error for regression."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def task_loss(kind: str, output: Tensor, target: Tensor) -> Tensor:
    """Mean loss of a batch. ``output``: ``(N, C)`` logits or ``(N, K)`` predictions; ``target``:
    ``(N,)`` class ids, or ``(N,)``/``(N, K)`` values for regression."""
    if kind == "classification":
        return F.cross_entropy(output, target)
    if kind == "regression":
        return F.mse_loss(output, target.reshape(output.shape).to(output.dtype))
    raise ValueError(f"unknown task kind {kind!r}; allowed: 'classification', 'regression'")
