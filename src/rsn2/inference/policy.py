"""When a :class:`~rsn2.inference.TaskModel`'s layers use the sparse kernels instead of a masked dense kernel.

The defaults come from the ``layers`` section of ``python -m benchmarks`` (see ``docs/performance.md``), which
times both paths side by side for one layer over densities and batch sizes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

from rsn2.errors import SpecError


@dataclass(frozen=True)
class SparsePolicy:
    """Thresholds of the automatic choice.

    Attributes:
        enabled: use the sparse path at all (CPU float32 weights and inputs).
        linear_max_density: a linear subnetwork owning at most this fraction of its layer runs sparse
            (holding only the packed form). In the ``layers`` sweep a 20% share ran faster sparse than
            dense at batch 1 and from 64 up, slower at batch 8 as a lone layer (a task's layers at
            a few samples run in fused runs instead, see :class:`~rsn2.inference.FusedRun`).
        conv_max_density: the same for convolutions (at most ``conv_max_batch`` samples). With the
            full-width stride-1 kernel, the ``layers`` sweep's convolution ran faster sparse than
            dense on one sample at 20% kept; from 8 samples on dense won at 20% and above.
        conv_max_batch: convolutions run sparse only up to this batch size.
        rows_kernel_max_batch: linear batches up to this size use the row-gather kernel; larger
            batches use the feature-major kernel (at batch 8 the row gather was the faster one at
            every density the ``layers`` sweep tries, at 64 the feature-major one).
        min_positions: layers with fewer kernel positions always run dense (too small to gain).
        fuse: group a task's consecutive layers into :class:`~rsn2.inference.FusedRun` s at all
            (off: one call per layer, as the ``inference`` tables' ``layered`` column measures).
        fused_max_batch: a run holding a convolution runs as one compiled call up to this batch
            size, else layer by layer (a run of linear layers switches from the row gather to the
            feature-major call beyond ``rows_kernel_max_batch`` instead). Whole CONV-A and CONV-B
            tasks ran fused faster than their dense controls at batch 1 and 4 (the ``inference``
            tables of ``python -m benchmarks``); a run with the limit at 8 had CONV-B fused at par
            or slower there.
    """

    enabled: bool = True
    linear_max_density: float = 0.25
    conv_max_density: float = 0.25
    conv_max_batch: int = 1
    rows_kernel_max_batch: int = 8
    min_positions: int = 4096
    fuse: bool = True
    fused_max_batch: int = 4

    def __post_init__(self) -> None:
        for name in ("linear_max_density", "conv_max_density"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SpecError(f"{name} must be in [0, 1], got {value}")
        for name in ("conv_max_batch", "rows_kernel_max_batch", "min_positions", "fused_max_batch"):
            if getattr(self, name) < 0:
                raise SpecError(f"{name} must be >= 0, got {getattr(self, name)}")


_policy = SparsePolicy()


def get_policy() -> SparsePolicy:
    """The policy in force."""
    return _policy


def set_policy(policy: SparsePolicy | None = None, **changes: object) -> SparsePolicy:
    """Replace the policy (``policy``) or change some of its fields; returns the previous one."""
    global _policy
    previous = _policy
    base = policy if policy is not None else _policy
    _policy = replace(base, **changes) if changes else base  # type: ignore[arg-type]
    return previous


@contextlib.contextmanager
def sparse_policy(policy: SparsePolicy | None = None, **changes: object) -> Iterator[SparsePolicy]:
    """Context manager form of :func:`set_policy`: ``with sparse_policy(enabled=False): ...``."""
    previous = set_policy(policy, **changes)
    try:
        yield get_policy()
    finally:
        set_policy(previous)
