"""Pack one subnetwork's share of a kernel into the delta-coded CSR the sparse kernels read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rsn2.errors import SpecError

BLOCKS = 256
"""Most parallel blocks a packed matrix is cut into."""

MAX_STEP = int(np.iinfo(np.uint8).max)
"""Largest column step one entry stores; a longer gap is bridged by value-0 entries of this step."""


@dataclass(frozen=True)
class DeltaCSR:
    """The nonzeros of a ``(rows, cols)`` matrix, row by row, each column stored as a one-byte step.

    Each entry costs 5 bytes (a float32 value and a uint8 step), with no padding: an entry's column
    is the previous entry's column in its row (0 before the row's first entry) plus its step. A gap
    wider than :data:`MAX_STEP` columns is bridged by *bridge entries*: value 0, step ``MAX_STEP``,
    at columns the subnetwork does not own (where the masked kernel holds 0 too, so the sums are
    unchanged). At 10% kept, bridges are rare (a gap of 256 free columns in a row).

    Attributes:
        shape: ``(rows, cols)`` of the dense matrix.
        row_ptr: ``int32 (rows + 1,)``; row ``r`` owns entries ``row_ptr[r]:row_ptr[r + 1]``.
        steps: ``uint8 (entries,)`` column step of each entry, in column order within a row.
        vals: ``float32 (entries,)`` value of each entry (0 for bridges).
        nnz: number of owned positions (entries less bridges).
        blocks: ``int32 (n_blocks + 1,)`` row boundaries of up to ``BLOCKS`` consecutive row ranges
            holding about equal numbers of entries: the kernels' parallel unit, so that threads get
            equal work even when selection gave some rows many more weights than others.

    Invariant: the dense matrix is recovered exactly by :meth:`to_dense`.
    """

    shape: tuple[int, int]
    row_ptr: np.ndarray
    steps: np.ndarray
    vals: np.ndarray
    nnz: int
    blocks: np.ndarray

    @classmethod
    def from_masked(cls, matrix: Tensor, mask: Tensor) -> DeltaCSR:
        """Pack ``matrix`` (float, 2-D) at the True positions of ``mask`` (same shape)."""
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
        row_ptr = torch.zeros(n_rows + 1, dtype=torch.int64)
        row_ptr[1:] = torch.cumsum(per_row, 0)
        return cls(
            shape=(n_rows, dense.shape[1]),
            row_ptr=row_ptr.to(torch.int32).numpy(),
            steps=steps.numpy(),
            vals=vals.numpy(),
            nnz=int(rows.numel()),
            blocks=balanced_blocks(row_ptr.numpy(), min(BLOCKS, n_rows)),
        )

    @property
    def nbytes(self) -> int:
        """Bytes held by the packed arrays."""
        return int(self.row_ptr.nbytes + self.steps.nbytes + self.vals.nbytes + self.blocks.nbytes)

    def columns(self) -> np.ndarray:
        """``int64 (entries,)``: the column of every entry (bridges included)."""
        running = np.cumsum(self.steps, dtype=np.int64)
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
        out[rows, self.columns()] = self.vals  # positions are distinct: bridges sit on unowned columns
        return torch.from_numpy(out)


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
