"""What a task's kind decides: its loss, its metric and how to read its outputs. The one place that
knows the kinds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, mean_squared_error
from torch import Tensor

from rsn2.errors import SpecError


@dataclass(frozen=True)
class TaskKind:
    """A kind of task.

    Attributes:
        name: ``"classification"`` or ``"regression"``.
        metric: the metric's name (``"accuracy"``, ``"mse"``).
        higher_is_better: whether a larger metric is better.
        target_dtype: dtype of the targets (class ids or values).
    """

    name: str
    metric: str
    higher_is_better: bool
    target_dtype: torch.dtype
    _loss: Callable[[Tensor, Tensor], Tensor]
    _metric: Callable[[np.ndarray, np.ndarray], float]

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Mean loss of a batch. ``output``: ``(N, C)`` logits or ``(N, K)`` predictions; ``target``:
        ``(N,)`` class ids, or ``(N,)``/``(N, K)`` values for regression."""
        return self._loss(output, target)

    def score(self, output: Tensor, target: Tensor) -> float:
        """The metric of ``output`` (``(N, outputs)``) against ``target`` (``(N,)`` or ``(N, K)``)."""
        return float(self._metric(output.detach().cpu().numpy(), target.detach().cpu().numpy()))


def _classification_loss(output: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(output, target)


def _regression_loss(output: Tensor, target: Tensor) -> Tensor:
    return F.mse_loss(output, target.reshape(output.shape).to(output.dtype))


def _accuracy(output: np.ndarray, target: np.ndarray) -> float:
    return float(accuracy_score(target, output.argmax(axis=1)))


def _mse(output: np.ndarray, target: np.ndarray) -> float:
    return float(mean_squared_error(target.reshape(output.shape), output))


TASK_KINDS: dict[str, TaskKind] = {
    "classification": TaskKind("classification", "accuracy", True, torch.long, _classification_loss, _accuracy),
    "regression": TaskKind("regression", "mse", False, torch.float32, _regression_loss, _mse),
}


def task_kind(name: str) -> TaskKind:
    """The :class:`TaskKind` called ``name``; raises :class:`~rsn2.errors.SpecError` naming the kinds."""
    try:
        return TASK_KINDS[name]
    except (KeyError, TypeError):
        raise SpecError(f"task kind must be one of {tuple(TASK_KINDS)}, got {name!r}") from None
