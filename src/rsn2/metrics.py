"""Continual-learning metrics as pure functions of an accuracy matrix: ACC, BWT, FWT, forgetting, LA.

``R`` is ``T x T``: ``R[i][j]`` is the test metric of task ``j`` after training stage ``i`` (tasks
learned one per stage, in order). Definitions follow Lopez-Paz & Ranzato (GEM, NeurIPS 2017) for ACC,
BWT and FWT, Chaudhry et al. (RWalk, ECCV 2018) for forgetting, and Riemer et al. (MER, ICLR 2019)
for learning accuracy. Entries above the diagonal (tasks not trained yet) are read only by FWT.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rsn2.errors import SpecError

Matrix = Sequence[Sequence[float]] | np.ndarray


def _square(r: Matrix, need_lower: bool = True) -> np.ndarray:
    a = np.asarray(r, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise SpecError(f"an accuracy matrix must be T x T with T >= 1, got shape {a.shape}")
    lower = np.tril(a)
    if need_lower and not np.isfinite(lower[np.tril_indices(len(a))]).all():
        raise SpecError("an accuracy matrix must be finite on and below its diagonal")
    return a


def average_accuracy(r: Matrix) -> float:
    """ACC: the mean over tasks of their metric after the last stage, ``mean_j R[T-1][j]``."""
    a = _square(r)
    return float(a[-1].mean())


def backward_transfer(r: Matrix) -> float:
    """BWT: how training later tasks changed earlier ones, ``mean_{j<T-1} (R[T-1][j] - R[j][j])``.

    Negative is forgetting; 0.0 exactly when every earlier task ends where it was learned. One task: 0.
    """
    a = _square(r)
    t = len(a)
    if t == 1:
        return 0.0
    return float(np.mean([a[-1, j] - a[j, j] for j in range(t - 1)]))


def forward_transfer(r: Matrix, reference: Sequence[float]) -> float:
    """FWT: what earlier tasks give a task before it is trained, ``mean_{j>0} (R[j-1][j] - b[j])``,
    ``b`` the ``reference`` metric of each task (e.g. an untrained model's). Needs ``R[j-1][j]``."""
    a = _square(r)
    b = np.asarray(reference, dtype=np.float64)
    if b.shape != (len(a),):
        raise SpecError(f"the reference needs one value per task ({len(a)}), got shape {b.shape}")
    if len(a) == 1:
        return 0.0
    values = [a[j - 1, j] - b[j] for j in range(1, len(a))]
    if not np.isfinite(values).all():
        raise SpecError("forward transfer needs R[j-1][j], each task's metric just before it is trained")
    return float(np.mean(values))


def average_forgetting(r: Matrix) -> float:
    """Forgetting: ``mean_{j<T-1} max_{i<T-1} (R[i][j] - R[T-1][j])`` over ``i >= j`` (the best a task
    ever was, minus where it ends). 0.0 for a method that never forgets. One task: 0."""
    a = _square(r)
    t = len(a)
    if t == 1:
        return 0.0
    return float(np.mean([max(a[i, j] for i in range(j, t - 1)) - a[-1, j] for j in range(t - 1)]))


def learning_accuracy(r: Matrix) -> float:
    """LA: the mean of each task's metric right after it was trained, ``mean_j R[j][j]``."""
    a = _square(r)
    return float(np.mean(np.diag(a)))
