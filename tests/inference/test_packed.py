import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rsn2.inference import DeltaCSR
from rsn2.inference.packed import MAX_STEP


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 40),
    cols=st.integers(1, 1200),
    density=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_packing_roundtrips_exactly(rows, cols, density, seed):
    gen = torch.Generator().manual_seed(seed)
    matrix = torch.randn(rows, cols, generator=gen)
    mask = torch.rand(rows, cols, generator=gen) < density
    packed = DeltaCSR.from_masked(matrix, mask)
    assert packed.nnz == int(mask.sum())
    assert torch.equal(packed.to_dense(), matrix * mask)
    assert packed.steps.dtype == np.uint8 and packed.vals.shape == packed.steps.shape
    bridges = len(packed.vals) - packed.nnz
    assert (packed.vals == 0).sum() >= bridges  # every bridge entry holds 0


def test_wide_gaps_are_bridged_by_zero_entries_on_unowned_columns():
    matrix = torch.randn(3, 2000)
    mask = torch.zeros(3, 2000, dtype=torch.bool)
    mask[0, [0, 255, 256, 1999]] = True  # gaps 255 (one step), 1, then 1743 (six bridges and a step of 213)
    mask[1, 700] = True  # a row's first column counts from 0: two bridges
    packed = DeltaCSR.from_masked(matrix, mask)
    assert packed.row_ptr.tolist() == [0, 4 + 6, 4 + 6 + 3, 13]
    assert packed.steps[:10].tolist() == [0, 255, 1] + [MAX_STEP] * 6 + [1743 - 6 * MAX_STEP]
    assert packed.columns()[:10].tolist() == [0, 255, 256, 511, 766, 1021, 1276, 1531, 1786, 1999]
    assert packed.nnz == 5
    assert torch.equal(packed.to_dense(), matrix * mask)


def test_packed_takes_five_bytes_a_weight():
    matrix = torch.randn(1000, 1000)
    mask = torch.rand(1000, 1000, generator=torch.Generator().manual_seed(0)) < 0.1
    packed = DeltaCSR.from_masked(matrix, mask)
    assert packed.nnz * 5 <= packed.nbytes < packed.nnz * 5 + 8 * 1000  # steps + values, then row pointers and blocks


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="2-D matrix"):
        DeltaCSR.from_masked(torch.zeros(2, 3, 4), torch.ones(2, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask of its shape"):
        DeltaCSR.from_masked(torch.zeros(2, 3), torch.ones(3, 2, dtype=torch.bool))


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 600), density=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_blocks_cover_every_row_once_in_order(rows, density, seed):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(rows, 50, generator=gen) < density
    packed = DeltaCSR.from_masked(torch.randn(rows, 50, generator=gen), mask)
    blocks = packed.blocks.tolist()
    assert blocks[0] == 0 and blocks[-1] == rows
    assert all(a < b for a, b in itertools.pairwise(blocks))
    assert len(blocks) - 1 <= min(256, rows)


def test_blocks_balance_uneven_rows():
    mask = torch.zeros(1000, 1000, dtype=torch.bool)
    mask[:100] = True  # the first tenth of the rows holds all the weights
    packed = DeltaCSR.from_masked(torch.randn(1000, 1000), mask)
    ptr, blocks = packed.row_ptr, packed.blocks
    per_block = [int(ptr[b] - ptr[a]) for a, b in itertools.pairwise(blocks)]
    halves = sum(per_block[: len(per_block) // 2]), sum(per_block[len(per_block) // 2 :])
    assert abs(halves[0] - halves[1]) <= 0.1 * sum(halves)
