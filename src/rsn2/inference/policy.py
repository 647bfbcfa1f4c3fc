"""When a :class:`~rsn2.inference.TaskModel`'s layers use the sparse kernels instead of a masked dense kernel.

The defaults come from the ``layers`` section of ``python -m benchmarks`` (see ``docs/performance.md``), which
times both paths side by side for one layer over densities and batch sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rsn2.devices import cpu_vendor
from rsn2.errors import SpecError
from rsn2.inference.values import check_value_dtype

ROWS_KERNEL_MAX_BATCH = {"GenuineIntel": 3}
"""CPU vendor -> the row gather's largest batch, where it differs from
:data:`DEFAULT_ROWS_KERNEL_MAX_BATCH` (``docs/decisions/feature-major-tiles.md``)."""

DEFAULT_ROWS_KERNEL_MAX_BATCH = 4


def default_rows_kernel_max_batch() -> int:
    """:data:`ROWS_KERNEL_MAX_BATCH` for this CPU's vendor, else :data:`DEFAULT_ROWS_KERNEL_MAX_BATCH`."""
    return ROWS_KERNEL_MAX_BATCH.get(cpu_vendor(), DEFAULT_ROWS_KERNEL_MAX_BATCH)


@dataclass(frozen=True)
class SparsePolicy:
    """Thresholds of the automatic choice.

    Attributes:
        enabled: use the sparse path at all (CPU float32 weights and inputs).
        linear_max_density: a linear subnetwork owning at most this fraction of its layer runs sparse
            (holding only the packed form). In the ``layers`` sweep a 20% share ran faster sparse than
            dense at every batch size it tries (at batch 8 since the feature-major tiles of 8
            samples; slower there before), a 50% share slower at most.
        conv_max_density: the same for convolutions. With the register-tiled kernel
            (:mod:`rsn2.inference.tiles`) the ``layers`` sweep's convolution ran faster sparse than
            dense at every batch size up to 30% kept, slower from 16 samples up at 50%.
        conv_max_batch: convolutions run sparse only up to this batch size (``None``: every batch
            size, and a convolution share the policy sends sparse holds only its packed form; a
            number keeps the masked dense kernel too, for the larger batches).
        rows_kernel_max_batch: linear batches up to this size use the row-gather kernel; larger
            batches use the feature-major kernel (and so do the packed linear layers of a fused
            run's slices of more samples). The row gather costs about one pass over the share per
            four samples (:mod:`~rsn2.inference.row_sums`), a register tile one pass for up to its
            width, and fewer than 16 samples are padded to a tile
            (:func:`~rsn2.inference.tiles.tile_width`). The default depends on the CPU
            (:func:`default_rows_kernel_max_batch`; ``docs/decisions/feature-major-tiles.md``).
        min_positions: layers with fewer kernel positions always run dense (too small to gain).
        fuse: group a task's consecutive layers into :class:`~rsn2.inference.FusedRun` s at all
            (off: one call per layer, as the ``inference`` tables' ``layered`` column measures).
        fused_max_batch: the most samples one fused call of a run holding a convolution or pool
            takes; larger batches go through in slices of this size, one after another on the
            same buffers, which small slices keep small and hot in cache
            (``docs/decisions/fused-runs.md``). A run of linear layers takes
            up to ``rows_kernel_max_batch`` samples in one row-gather call and larger batches in
            one feature-major call instead.
        compact_steps: hold the packed linear shares with 4-bit column steps (escapes for the
            rest; see :class:`~rsn2.inference.DeltaCSR`): 4.5 bytes per kept weight and one per
            escaped step rather than 5, for the memory of serving many tasks (``rsn2 serve
            --compact-steps``), at a cost in speed (``compact_speedup`` in the ``inference``
            section of ``python -m benchmarks``). Convolution shares keep one-byte steps.
        values: ``"float32"``, or ``"bfloat16"``: every share a :class:`~rsn2.inference.TaskModel`
            holds packed keeps its values in 2 bytes instead of 4 (3 bytes per kept weight with its
            step), rounded to nearest; the kernels widen them to float32 as they read them and sum in
            float32. A share's masked dense kernel, where one is held, holds the same rounded values in
            float32, so that every path of a task gives the same answers (``rsn2 serve --values``,
            ``rsn2 export --values``; the ``precision`` section of ``python -m benchmarks`` measures
            the accuracy, memory and speed against float32).
    """

    enabled: bool = True
    linear_max_density: float = 0.25
    conv_max_density: float = 0.25
    conv_max_batch: int | None = None
    rows_kernel_max_batch: int = field(default_factory=default_rows_kernel_max_batch)
    min_positions: int = 4096
    fuse: bool = True
    fused_max_batch: int = 16
    compact_steps: bool = False
    values: str = "float32"

    def __post_init__(self) -> None:
        check_value_dtype(self.values)
        for name in ("linear_max_density", "conv_max_density"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SpecError(f"{name} must be in [0, 1], got {value}")
        if self.conv_max_batch is not None and self.conv_max_batch < 0:
            raise SpecError(f"conv_max_batch must be >= 0 or None (every batch size), got {self.conv_max_batch}")
        for name in ("rows_kernel_max_batch", "min_positions"):
            if getattr(self, name) < 0:
                raise SpecError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.fused_max_batch < 1:
            raise SpecError(f"fused_max_batch must be >= 1 (samples per fused call), got {self.fused_max_batch}")
