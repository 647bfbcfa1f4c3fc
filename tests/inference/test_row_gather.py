"""The row-gather kernel (a few samples) against NumPy, at every row length around its unrolled groups."""

import numpy as np
import pytest
import torch

from rsn2.inference import DeltaCSR, kernels


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 9])
def test_rows_of_every_length_from_0_to_49_sum_exactly_their_entries(batch, compact):
    """Row ``r`` keeps ``r`` columns (0 to 49): every leftover after the groups of four, and many groups
    (compact: every leftover pair, steps escaped and not); one sample alone, two to four in one pass
    over each row, more in passes of four and the rest."""
    gen = torch.Generator().manual_seed(0)
    n_rows, n_cols = 50, 200
    matrix = torch.randn(n_rows, n_cols, generator=gen)
    mask = torch.zeros(n_rows, n_cols, dtype=torch.bool)
    for r in range(n_rows):
        mask[r, torch.randperm(n_cols, generator=gen)[:r]] = True
    packed = DeltaCSR.from_masked(matrix, mask, compact=compact)
    lengths = np.arange(n_rows) + (np.arange(n_rows) % 2 if compact else 0)  # compact rows pad to even lengths
    assert np.array_equal(np.diff(packed.row_ptr), lengths)  # no bridges: every gap is under 256 columns
    x = torch.randn(batch, n_cols, generator=gen).numpy()
    out = np.full((batch, n_rows), np.nan, dtype=np.float32)
    kernels.rows_gather(packed.row_ptr, packed.blocks, packed.steps, packed.escapes, packed.vals, x, out)
    expected = x.astype(np.float64) @ (matrix * mask).double().numpy().T
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert np.all(out[:, 0] == 0)  # an empty row sums to exactly zero
