"""Early stopping on validation loss, keeping the best weights (docs/method.md, "Training settings")."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rsn2.errors import SpecError

MIN_DELTA_MODES = ("abs", "rel")
STOPPING_SCOPES = ("stage", "task")


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs without an improvement of more than ``min_delta``.

    ``mode="abs"`` (Keras, the paper): an epoch improves when its loss is below ``best - min_delta``.
    ``mode="rel"``: below ``best * (1 - min_delta)``, so that ``min_delta`` is a fraction of the loss
    and a stage summing several tasks' losses is held to the same bar as one task alone.

    Call :meth:`update` once per epoch with the monitored loss; it returns True when that epoch is
    the new best (the caller then keeps a copy of the weights).
    """

    patience: int = 3
    min_delta: float = 0.01
    mode: str = "abs"
    best: float = field(default=math.inf, init=False)
    best_epoch: int = field(default=-1, init=False)
    since_best: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.mode not in MIN_DELTA_MODES:
            raise SpecError(f"min_delta_mode must be one of {MIN_DELTA_MODES}, got {self.mode!r}")

    def update(self, epoch: int, loss: float) -> bool:
        bar = self.best * (1.0 - self.min_delta) if self.mode == "rel" else self.best - self.min_delta
        if loss < bar:
            self.best, self.best_epoch, self.since_best = loss, epoch, 0
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.since_best >= self.patience


def stopping_groups(subnetworks_by_task: Mapping[str, Iterable[str]], scope: str) -> list[tuple[str, ...]]:
    """The groups of a stage's tasks that stop early together, in the tasks' order.

    ``scope="stage"``: one group, every task (the paper: one stopper on the summed validation loss).
    ``scope="task"``: tasks that share a subnetwork (``subnetworks_by_task``: each task's subnetworks)
    form one group, every other task is a group of its own. A group's weights (its subnetworks, their
    biases and its tasks' modules) feed only its own tasks, so each group can keep its own best epoch.
    """
    if scope not in STOPPING_SCOPES:
        raise SpecError(f"early_stopping must be one of {STOPPING_SCOPES}, got {scope!r}")
    tasks = list(subnetworks_by_task)
    if scope == "stage":
        return [tuple(tasks)]
    parent = {t: t for t in tasks}

    def root(t: str) -> str:
        while parent[t] != t:
            t = parent[t]
        return t

    owner: dict[str, str] = {}
    for t in tasks:
        for s in subnetworks_by_task[t]:
            if s in owner:
                parent[root(t)] = root(owner[s])
            else:
                owner[s] = t
    groups: dict[str, list[str]] = {}
    for t in tasks:
        groups.setdefault(root(t), []).append(t)
    return [tuple(g) for g in groups.values()]
