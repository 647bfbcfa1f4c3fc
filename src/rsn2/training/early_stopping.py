"""Early stopping on validation loss, keeping the best weights (SPEC section 5)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs without an improvement of more than ``min_delta``.

    Call :meth:`update` once per epoch with the monitored loss; it returns True when that epoch is
    the new best (the caller then keeps a copy of the weights).
    """

    patience: int = 3
    min_delta: float = 0.01
    best: float = field(default=math.inf, init=False)
    best_epoch: int = field(default=-1, init=False)
    since_best: int = field(default=0, init=False)

    def update(self, epoch: int, loss: float) -> bool:
        if loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.since_best = loss, epoch, 0
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.since_best >= self.patience
