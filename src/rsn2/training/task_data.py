"""A task's training data and its seeded validation split."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rsn2.errors import SpecError, TaskError
from rsn2.network.spec import TaskSpec


@dataclass
class TaskData:
    """Training inputs and targets of one task, optionally with an explicit validation set.

    Shapes: ``x`` is ``(N, *input_shape)``, ``y`` is ``(N,)`` class ids or ``(N,)``/``(N, K)`` values.
    ``batch_size`` overrides the stage's batch size for this task (the paper uses 32 for Boston).
    """

    x: Tensor
    y: Tensor
    x_val: Tensor | None = None
    y_val: Tensor | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("x", "y", "x_val", "y_val"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Tensor):
                raise SpecError(f"{name} must be a torch.Tensor, got {type(value).__name__} (torch.as_tensor({name}))")
        if len(self.x) != len(self.y):
            raise SpecError(f"x has {len(self.x)} samples but y has {len(self.y)}")
        if len(self.x) == 0:
            raise SpecError("a task needs at least one training sample")
        if (self.x_val is None) != (self.y_val is None):
            raise SpecError("give both x_val and y_val, or neither")
        if self.x_val is not None and self.y_val is not None and len(self.x_val) != len(self.y_val):
            raise SpecError(f"x_val has {len(self.x_val)} samples but y_val has {len(self.y_val)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise SpecError(f"batch_size must be >= 1, got {self.batch_size}")

    def to(self, device: torch.device) -> TaskData:
        """The same data on ``device`` (tensors already there are not copied)."""
        x_val = self.x_val.to(device) if self.x_val is not None else None
        y_val = self.y_val.to(device) if self.y_val is not None else None
        return TaskData(self.x.to(device), self.y.to(device), x_val, y_val, self.batch_size)


def validation_split(data: TaskData, fraction: float, seed: int) -> tuple[TaskData, tuple[Tensor, Tensor]]:
    """Split off ``fraction`` of the samples as validation, fixed by ``seed``.

    Returns the training part (same ``batch_size``) and ``(x_val, y_val)``. If ``data`` already has a
    validation set it is used as given. At least one sample stays on each side.
    """
    if data.x_val is not None and data.y_val is not None:
        return data, (data.x_val, data.y_val)
    if not 0.0 < fraction < 1.0:
        raise SpecError(f"validation fraction must be in (0, 1), got {fraction}")
    n = len(data.x)
    if n < 2:
        raise SpecError(f"cannot split {n} sample(s) into training and validation")
    n_val = min(n - 1, max(1, round(fraction * n)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = order[:n_val], order[n_val:]
    return TaskData(data.x[train], data.y[train], batch_size=data.batch_size), (data.x[val], data.y[val])


def check_task_data(spec: TaskSpec, data: TaskData) -> None:
    """Raise :class:`~rsn2.errors.TaskError` naming the task when ``data`` does not fit ``spec``: input
    shape and dtype, and targets (class ids below the number of outputs, or one value per output)."""
    name, shape = spec.name, tuple(spec.input_shape)
    for x, y, which in ((data.x, data.y, "x"), (data.x_val, data.y_val, "x_val")):
        if x is None or y is None:
            continue
        if tuple(x.shape[1:]) != shape or x.dim() != len(shape) + 1:
            raise TaskError(
                f"task {name!r}: {which} must have shape (N, {', '.join(map(str, shape))}), got {tuple(x.shape)}"
            )
        if spec.takes_tokens == x.dtype.is_floating_point:
            want = "int64 token ids" if spec.takes_tokens else "floating-point values"
            raise TaskError(f"task {name!r}: {which} must hold {want}, got {x.dtype}")
        outputs = spec.outputs
        target = "y" if which == "x" else "y_val"
        if x.dtype.is_floating_point and not bool(torch.isfinite(x).all()):
            raise TaskError(f"task {name!r}: {which} holds NaN or infinite values")
        if y.dtype.is_floating_point and not bool(torch.isfinite(y).all()):
            raise TaskError(f"task {name!r}: {target} holds NaN or infinite values")
        if spec.kind == "classification":
            if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
                raise TaskError(
                    f"task {name!r}: {target} must be (N,) integer class ids, got {y.dtype} {tuple(y.shape)}"
                )
            if outputs is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= outputs):
                raise TaskError(
                    f"task {name!r}: {target} holds class ids {int(y.min())}..{int(y.max())}; its head has "
                    f"{outputs} outputs, so ids must be in 0..{outputs - 1}"
                )
        elif outputs is not None and y[0].numel() != outputs:
            raise TaskError(f"task {name!r}: {target} needs {outputs} value(s) per sample, got shape {tuple(y.shape)}")
