"""Pack one subnetwork's share of a kernel into the chunked CSR the sparse kernels read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rsn2.errors import SpecError
from rsn2.inference.kernels import CHUNK

BLOCKS = 256
"""Most parallel blocks a packed matrix is cut into."""


@dataclass(frozen=True)
class ChunkedCSR:
    """The nonzeros of a ``(rows, cols)`` matrix, row by row, in chunks of ``CHUNK``.

    Attributes:
        shape: ``(rows, cols)`` of the dense matrix.
        chunk_ptr: ``int32 (rows + 1,)``; row ``r`` owns chunks ``chunk_ptr[r]:chunk_ptr[r + 1]``.
        cols: ``int16`` (matrices up to 32,767 columns) or ``int32`` ``(n_chunks, CHUNK)``: the column
            of each entry; padding entries read column 0.
        vals: ``float32 (n_chunks, CHUNK)`` value of each entry; padding entries are 0.
        nnz: number of real (unpadded) entries.
        blocks: ``int32 (n_blocks + 1,)`` row boundaries of up to ``BLOCKS`` consecutive row ranges
            holding about equal numbers of chunks: the kernels' parallel unit, so that threads get
            equal work even when selection gave some rows many more weights than others.

    Invariant: the dense matrix is recovered exactly by :meth:`to_dense`.
    """

    shape: tuple[int, int]
    chunk_ptr: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    nnz: int
    blocks: np.ndarray

    @classmethod
    def from_masked(cls, matrix: Tensor, mask: Tensor) -> ChunkedCSR:
        """Pack ``matrix`` (float, 2-D) at the True positions of ``mask`` (same shape)."""
        if matrix.dim() != 2 or tuple(mask.shape) != tuple(matrix.shape):
            raise SpecError(
                f"need a 2-D matrix and a mask of its shape, got {tuple(matrix.shape)}, {tuple(mask.shape)}"
            )
        dense = matrix.detach().to("cpu", torch.float32)
        keep = mask.detach().to("cpu", torch.bool)
        n_rows, n_cols = dense.shape
        rows, cols = keep.nonzero(as_tuple=True)  # row-major order, columns ascending within a row
        counts = torch.bincount(rows, minlength=n_rows)
        chunks_per_row = (counts + CHUNK - 1) // CHUNK
        chunk_ptr = torch.zeros(n_rows + 1, dtype=torch.int64)
        chunk_ptr[1:] = torch.cumsum(chunks_per_row, 0)
        n_chunks = int(chunk_ptr[-1])
        # slot of every entry in the flat padded arrays: its row's first slot + its rank in the row
        row_start = torch.zeros(n_rows + 1, dtype=torch.int64)
        row_start[1:] = torch.cumsum(counts, 0)
        rank = torch.arange(rows.numel()) - row_start[rows]
        slot = chunk_ptr[rows] * CHUNK + rank
        col_dtype = torch.int16 if n_cols <= np.iinfo(np.int16).max else torch.int32  # half the index bytes
        flat_cols = torch.zeros(n_chunks * CHUNK, dtype=col_dtype)
        flat_vals = torch.zeros(n_chunks * CHUNK, dtype=torch.float32)
        flat_cols[slot] = cols.to(col_dtype)
        flat_vals[slot] = dense[rows, cols]
        return cls(
            shape=(n_rows, n_cols),
            chunk_ptr=chunk_ptr.to(torch.int32).numpy(),
            cols=flat_cols.view(n_chunks, CHUNK).numpy(),
            vals=flat_vals.view(n_chunks, CHUNK).numpy(),
            nnz=int(rows.numel()),
            blocks=_balanced_blocks(chunk_ptr.numpy(), min(BLOCKS, n_rows)),
        )

    @property
    def nbytes(self) -> int:
        """Bytes held by the packed arrays."""
        return int(self.chunk_ptr.nbytes + self.cols.nbytes + self.vals.nbytes + self.blocks.nbytes)

    def to_dense(self) -> Tensor:
        """The dense ``float32`` matrix (zeros off the packed positions)."""
        n_rows, n_cols = self.shape
        out = np.zeros((n_rows, n_cols), dtype=np.float32)
        rows = np.repeat(np.arange(n_rows), np.diff(self.chunk_ptr) * CHUNK)
        flat_vals = self.vals.reshape(-1)
        real = flat_vals != 0
        np.add.at(out, (rows[real], self.cols.reshape(-1)[real]), flat_vals[real])
        return torch.from_numpy(out)


def _balanced_blocks(chunk_ptr: np.ndarray, n_blocks: int) -> np.ndarray:
    """Row boundaries ``0 = b_0 <= ... <= b_n = rows`` cutting the chunks into ``n_blocks`` near-equal parts
    (one row that holds more than a part's share gets a block to itself; empty blocks are dropped)."""
    n_rows = len(chunk_ptr) - 1
    targets = np.linspace(0, chunk_ptr[-1], n_blocks + 1)[1:-1]
    cuts = np.searchsorted(chunk_ptr, targets, side="left")
    return np.unique(np.concatenate([[0], np.clip(cuts, 0, n_rows), [n_rows]])).astype(np.int32)
