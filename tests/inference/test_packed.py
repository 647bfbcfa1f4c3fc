import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rsn2.inference import ChunkedCSR
from rsn2.inference.kernels import CHUNK


@settings(max_examples=30, deadline=None)
@given(
    rows=st.integers(1, 40),
    cols=st.integers(1, 70),
    density=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_packing_roundtrips_exactly(rows, cols, density, seed):
    gen = torch.Generator().manual_seed(seed)
    matrix = torch.randn(rows, cols, generator=gen)
    mask = torch.rand(rows, cols, generator=gen) < density
    packed = ChunkedCSR.from_masked(matrix, mask)
    assert packed.nnz == int(mask.sum())
    assert torch.equal(packed.to_dense(), matrix * mask)
    assert packed.cols.shape[1] == CHUNK and packed.vals.shape == packed.cols.shape
    counts = mask.sum(dim=1)
    assert (torch.from_numpy(packed.chunk_ptr).diff() == (counts + CHUNK - 1) // CHUNK).all()


def test_packed_is_smaller_than_dense_at_low_density():
    matrix = torch.randn(1000, 1000)
    mask = torch.rand(1000, 1000, generator=torch.Generator().manual_seed(0)) < 0.1
    packed = ChunkedCSR.from_masked(matrix, mask)
    assert packed.nbytes < 0.25 * matrix.numel() * 4


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="2-D matrix"):
        ChunkedCSR.from_masked(torch.zeros(2, 3, 4), torch.ones(2, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask of its shape"):
        ChunkedCSR.from_masked(torch.zeros(2, 3), torch.ones(3, 2, dtype=torch.bool))


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 600), density=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_blocks_cover_every_row_once_in_order(rows, density, seed):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(rows, 50, generator=gen) < density
    packed = ChunkedCSR.from_masked(torch.randn(rows, 50, generator=gen), mask)
    blocks = packed.blocks.tolist()
    assert blocks[0] == 0 and blocks[-1] == rows
    assert all(a < b for a, b in itertools.pairwise(blocks))
    assert len(blocks) - 1 <= min(256, rows)


def test_blocks_balance_uneven_rows():
    mask = torch.zeros(1000, 1000, dtype=torch.bool)
    mask[:100] = True  # the first tenth of the rows holds all the weights
    packed = ChunkedCSR.from_masked(torch.randn(1000, 1000), mask)
    ptr, blocks = packed.chunk_ptr, packed.blocks
    per_block = [int(ptr[b] - ptr[a]) for a, b in itertools.pairwise(blocks)]
    halves = sum(per_block[: len(per_block) // 2]), sum(per_block[len(per_block) // 2 :])
    assert abs(halves[0] - halves[1]) <= 0.1 * sum(halves)
