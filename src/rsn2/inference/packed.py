"""Pack one subnetwork's share of a kernel into the delta-coded CSR the sparse kernels read."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from rsn2.errors import SpecError
from rsn2.inference.values import as_float32, check_value_dtype, to_bfloat16_bits

BLOCKS = 256
"""Most parallel blocks a packed matrix is cut into."""

MAX_STEP = int(np.iinfo(np.uint8).max)
"""Largest column step one entry stores; a longer gap is bridged by value-0 entries of this step."""

MAX_NIBBLE = 15
"""Largest column step a compact entry holds in its own 4 bits; longer steps (and a step of 0) are
escaped (see :class:`DeltaCSR`)."""


@dataclass(frozen=True)
class DeltaCSR:
    """The nonzeros of a ``(rows, cols)`` matrix, row by row, each column stored as a one-byte step.

    Each entry costs 5 bytes (a float32 value and a uint8 step), or 3 with bfloat16 values (held as
    their ``uint16`` bits, see :mod:`rsn2.inference.values`), with no padding: an entry's column
    is the previous entry's column in its row (0 before the row's first entry) plus its step. A gap
    wider than :data:`MAX_STEP` columns is bridged by *bridge entries*: value 0, step ``MAX_STEP``,
    at columns the subnetwork does not own (where the masked kernel holds 0 too, so the sums are
    unchanged). At 10% kept, bridges are rare (a gap of 256 free columns in a row).

    *Compact* form (``escapes`` not empty, linear kernels only): each step takes 4 bits, so an entry
    costs 4.5 bytes, and one more where its step is escaped (``held_MB`` in
    ``docs/performance/serve-memory.md`` compares the layouts). Every row holds an even number
    of entries (a row of odd length ends with a pad entry: value 0, step 0), so row ``r``'s steps
    start at byte ``row_ptr[r] // 2`` of ``steps``, two to a byte, the lower 4 bits first. A step of
    1 to :data:`MAX_NIBBLE` is stored as itself; 0 in those 4 bits is an *escape*: the step is the
    next of the row's escaped steps, one byte each, which follow all the 4-bit steps in ``steps`` in
    entry order, row ``r``'s from ``escapes[r]`` on; one spare byte ends ``steps`` (the kernels read
    one escaped step ahead). Decoding costs the kernels time (``compact_speedup`` against
    ``speedup`` in ``docs/performance/latest.md``).

    Attributes:
        shape: ``(rows, cols)`` of the dense matrix.
        row_ptr: ``int32 (rows + 1,)``; row ``r`` owns entries ``row_ptr[r]:row_ptr[r + 1]``.
        steps: ``uint8 (entries,)`` column step of each entry, in column order within a row;
            compact: ``uint8 (entries // 2 + escaped + 1,)``, the 4-bit steps, the escaped ones, a
            spare byte.
        vals: ``float32 (entries,)`` value of each entry (0 for bridges), or ``uint16 (entries,)``
            their bfloat16 bits (:attr:`value_dtype`).
        nnz: number of owned positions (entries less bridges).
        blocks: ``int32 (n_blocks + 1,)`` row boundaries of up to ``BLOCKS`` consecutive row ranges
            holding about equal numbers of entries: the kernels' parallel unit, so that threads get
            equal work even when selection gave some rows many more weights than others.
        escapes: ``int32 (rows + 1,)``: where each row's escaped steps start in ``steps`` (compact
            form; the last is where they end, at the spare byte), or empty (one byte per step).

    Invariant: the dense matrix is recovered exactly by :meth:`to_dense`.
    """

    shape: tuple[int, int]
    row_ptr: np.ndarray
    steps: np.ndarray
    vals: np.ndarray
    nnz: int
    blocks: np.ndarray
    escapes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    @classmethod
    def from_masked(cls, matrix: Tensor, mask: Tensor, *, compact: bool = False, values: str = "float32") -> DeltaCSR:
        """Pack ``matrix`` (float, 2-D) at the True positions of ``mask`` (same shape); ``compact``:
        4-bit steps (see the class docstring); ``values``: ``"float32"`` or ``"bfloat16"`` (rounded to
        nearest, ties to even)."""
        check_value_dtype(values)
        if matrix.dim() != 2 or tuple(mask.shape) != tuple(matrix.shape):
            raise SpecError(
                f"need a 2-D matrix and a mask of its shape, got {tuple(matrix.shape)}, {tuple(mask.shape)}"
            )
        dense = matrix.detach().to("cpu", torch.float32)
        keep = mask.detach().to("cpu", torch.bool)
        n_rows = dense.shape[0]
        rows, cols = keep.nonzero(as_tuple=True)  # row-major order, columns ascending within a row
        starts_row = torch.ones_like(rows, dtype=torch.bool)
        starts_row[1:] = rows[1:] != rows[:-1]
        previous = torch.zeros_like(cols)
        previous[1:] = cols[:-1]
        gap = cols - torch.where(starts_row, torch.zeros_like(cols), previous)  # >= 1, or >= 0 at a row's start
        bridges = ((gap - 1) // MAX_STEP).clamp(min=0)
        slot = torch.arange(rows.numel()) + torch.cumsum(bridges, 0)  # bridges go just before their entry
        n_entries = rows.numel() + int(bridges.sum())
        if n_entries > np.iinfo(np.int32).max:
            raise SpecError(f"a share of {n_entries} entries is too large to pack (at most {np.iinfo(np.int32).max})")
        steps = torch.full((n_entries,), MAX_STEP, dtype=torch.uint8)
        vals = torch.zeros(n_entries, dtype=torch.float32)
        steps[slot] = (gap - MAX_STEP * bridges).to(torch.uint8)
        vals[slot] = dense[rows, cols]
        per_row = torch.zeros(n_rows, dtype=torch.int64).index_add_(0, rows, bridges + 1)  # entries, bridges included
        row_ptr = np.zeros(n_rows + 1, dtype=np.int64)
        row_ptr[1:] = np.cumsum(per_row.numpy())
        packed_vals = to_bfloat16_bits(vals) if values == "bfloat16" else vals.numpy()
        packed_steps, escapes = steps.numpy(), np.zeros(0, np.int32)
        if compact:
            row_ptr, packed_steps, packed_vals, escapes = _compacted(row_ptr, packed_steps, packed_vals)
        if row_ptr[-1] > np.iinfo(np.int32).max:
            raise SpecError(f"a share of {row_ptr[-1]} entries is too large to pack (at most {np.iinfo(np.int32).max})")
        return cls(
            shape=(n_rows, dense.shape[1]),
            row_ptr=row_ptr.astype(np.int32),
            steps=packed_steps,
            vals=packed_vals,
            nnz=int(rows.numel()),
            blocks=balanced_blocks(row_ptr, min(BLOCKS, n_rows)),
            escapes=escapes,
        )

    @property
    def compact(self) -> bool:
        """Whether the steps are held in 4 bits (with escapes) rather than one byte each."""
        return self.escapes.size > 0

    @property
    def value_dtype(self) -> str:
        """``"float32"`` or ``"bfloat16"``: how :attr:`vals` holds the values."""
        return "bfloat16" if self.vals.dtype == np.uint16 else "float32"

    @property
    def nbytes(self) -> int:
        """Bytes held by the packed arrays."""
        arrays = (self.row_ptr, self.steps, self.vals, self.blocks, self.escapes)
        return int(sum(a.nbytes for a in arrays))

    def entry_steps(self) -> np.ndarray:
        """``uint8 (entries,)``: every entry's column step, whichever form holds them."""
        if not self.compact:
            return self.steps
        n_entries = int(self.row_ptr[-1])
        pairs = self.steps[: n_entries // 2]
        out = np.empty(n_entries, dtype=np.uint8)
        out[0::2], out[1::2] = pairs & MAX_NIBBLE, pairs >> 4
        out[out == 0] = self.steps[n_entries // 2 : self.escapes[-1]]  # escaped steps, in entry order
        return out

    def columns(self) -> np.ndarray:
        """``int64 (entries,)``: the column of every entry (bridges and pads included)."""
        running = np.cumsum(self.entry_steps(), dtype=np.int64)
        before_row = np.concatenate([[0], running])[self.row_ptr[:-1]]  # running sum before each row's first entry
        return running - np.repeat(before_row, np.diff(self.row_ptr))

    def conv_offsets(
        self, kernel_size: tuple[int, int], dilation: tuple[int, int], padded: tuple[int, int]
    ) -> np.ndarray:
        """``uint32 (entries,)``: where each entry's tap starts in a padded input, for a convolution
        kernel ``(C_out, C_in * kh * kw)`` (see :func:`tap_offsets`)."""
        return tap_offsets(self.columns(), self.shape[1], kernel_size, dilation, padded)

    def to_dense(self) -> Tensor:
        """The dense ``float32`` matrix (zeros off the packed positions)."""
        n_rows, n_cols = self.shape
        out = np.zeros((n_rows, n_cols), dtype=np.float32)
        rows = np.repeat(np.arange(n_rows), np.diff(self.row_ptr))
        vals = as_float32(self.vals)
        held = vals != 0  # bridges and pads hold 0, and a pad shares its row's last column
        out[rows[held], self.columns()[held]] = vals[held]
        return torch.from_numpy(out)


def _compacted(
    row_ptr: np.ndarray, steps: np.ndarray, vals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The compact form of one-byte-step entries: ``(row_ptr, steps, vals, escapes)``, every row of
    odd length given a pad entry (value 0, step 0) at its end (see :class:`DeltaCSR`)."""
    lengths = np.diff(row_ptr)
    padded = lengths + (lengths & 1)
    new_ptr = np.zeros_like(row_ptr)
    new_ptr[1:] = np.cumsum(padded)
    n_entries = int(new_ptr[-1])
    owner = np.repeat(np.arange(len(lengths)), lengths)
    slot = np.arange(len(steps)) - row_ptr[owner] + new_ptr[owner]  # where each entry lands
    full = np.zeros(n_entries, dtype=np.uint8)  # pads: step 0 (escaped), value 0
    new_vals = np.zeros(n_entries, dtype=vals.dtype)  # 0 is 0.0 as bfloat16 bits too
    full[slot], new_vals[slot] = steps, vals
    escaped = (full == 0) | (full > MAX_NIBBLE)
    nibbles = np.where(escaped, 0, full).astype(np.uint8)
    escaped_before = np.concatenate([[0], np.cumsum(escaped)])  # escaped steps before each entry
    escapes = n_entries // 2 + escaped_before[new_ptr]
    spare = np.zeros(1, np.uint8)  # read, unused, by the kernels' branchless decode of the last escape
    packed = np.concatenate([nibbles[0::2] | (nibbles[1::2] << 4), full[escaped], spare]).astype(np.uint8)
    if escapes[-1] > np.iinfo(np.int32).max:
        raise SpecError(f"a share of {n_entries} entries is too large to pack (at most {np.iinfo(np.int32).max})")
    return new_ptr, packed, new_vals, escapes.astype(np.int32)


def balanced_blocks(row_ptr: np.ndarray, n_blocks: int = BLOCKS) -> np.ndarray:
    """Row boundaries ``0 = b_0 <= ... <= b_n = rows`` cutting the entries into ``n_blocks`` near-equal parts
    (one row that holds more than a part's share gets a block to itself; empty blocks are dropped)."""
    n_rows = len(row_ptr) - 1
    targets = np.linspace(0, row_ptr[-1], n_blocks + 1)[1:-1]
    cuts = np.searchsorted(row_ptr, targets, side="left")
    return np.unique(np.concatenate([[0], np.clip(cuts, 0, n_rows), [n_rows]])).astype(np.int32)


def tap_offsets(
    columns: np.ndarray,
    n_columns: int,
    kernel_size: tuple[int, int],
    dilation: tuple[int, int],
    padded: tuple[int, int],
) -> np.ndarray:
    """``uint32``: where each column's tap starts in a padded input, for a convolution kernel.

    ``columns`` index the kernel's ``(C_in * kh * kw)`` columns, ordered ``(ci, i, j)`` as
    ``Tensor.reshape`` flattens ``(C_out, C_in, kh, kw)``; ``padded = (H_p, W_p)`` is the padded
    input's plane. Column ``(ci, i, j)`` starts at ``(ci * H_p + i * dh) * W_p + j * dw`` of the
    input's flat ``(C_in, H_p, W_p)`` form (see :func:`~rsn2.inference.kernels.conv2d_wide`).
    """
    kh, kw = kernel_size
    dh, dw = dilation
    h_p, w_p = padded
    if n_columns * h_p * w_p >= np.iinfo(np.uint32).max:
        raise SpecError(f"an input of {n_columns // (kh * kw)} x {h_p} x {w_p} is too large for the sparse kernels")
    ci, i, j = columns // (kh * kw), (columns // kw) % kh, columns % kw
    return ((ci * h_p + i * dh) * w_p + j * dw).astype(np.uint32)
