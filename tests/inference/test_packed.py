import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rsn2.inference import DeltaCSR
from rsn2.inference.packed import MAX_NIBBLE, MAX_STEP


@st.composite
def _masked_matrices(draw):
    """A random ``(rows, cols)`` matrix and a mask of it at a random density (wide rows: long gaps)."""
    rows, cols = draw(st.integers(1, 40)), draw(st.integers(1, 1200))
    density, seed = draw(st.floats(0.0, 1.0)), draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=gen), torch.rand(rows, cols, generator=gen) < density


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_packing_roundtrips_exactly(data):
    matrix, mask = data.draw(_masked_matrices())
    packed = DeltaCSR.from_masked(matrix, mask)
    assert packed.nnz == int(mask.sum())
    assert torch.equal(packed.to_dense(), matrix * mask)
    assert packed.steps.dtype == np.uint8 and packed.vals.shape == packed.steps.shape
    bridges = len(packed.vals) - packed.nnz
    assert (packed.vals == 0).sum() >= bridges  # every bridge entry holds 0


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_compact_packing_holds_the_same_entries_in_4_bit_steps(data):
    matrix, mask = data.draw(_masked_matrices())
    byte, compact = DeltaCSR.from_masked(matrix, mask), DeltaCSR.from_masked(matrix, mask, compact=True)
    assert compact.compact and not byte.compact and compact.nnz == byte.nnz
    assert torch.equal(compact.to_dense(), matrix * mask)
    lengths = np.diff(compact.row_ptr)
    assert (lengths % 2 == 0).all() and np.array_equal(lengths - np.diff(byte.row_ptr), np.diff(byte.row_ptr) % 2)
    steps = compact.entry_steps()
    escaped = int(((steps == 0) | (steps > MAX_NIBBLE)).sum())
    n_entries = int(compact.row_ptr[-1])
    assert len(compact.steps) == n_entries // 2 + escaped + 1  # 4-bit steps, escaped steps, the spare byte
    assert compact.escapes[0] == n_entries // 2 and compact.escapes[-1] == len(compact.steps) - 1
    real = np.ones(n_entries, bool)
    real[compact.row_ptr[1:][lengths != np.diff(byte.row_ptr)] - 1] = False  # the pads end their rows
    assert np.array_equal(compact.columns()[real], byte.columns())
    assert np.array_equal(compact.vals[real], byte.vals) and (compact.vals[~real] == 0).all()


def test_compact_steps_escape_zero_and_long_steps_row_by_row():
    matrix = torch.arange(1.0, 1.0 + 3 * 400).reshape(3, 400)
    mask = torch.zeros(3, 400, dtype=torch.bool)
    mask[0, [0, 3, 19, 20]] = True  # steps 0 (escaped), 3, 16 (escaped), 1
    mask[1, 7] = True  # step 7, then a pad (value 0, step 0: escaped) for an even row
    mask[2, [5, 300, 399]] = True  # 5, a bridge of 255 and 40 (both escaped), 99 (escaped)
    packed = DeltaCSR.from_masked(matrix, mask, compact=True)
    assert packed.row_ptr.tolist() == [0, 4, 6, 10]
    pairs = [0 | 3 << 4, 0 | 1 << 4, 7 | 0 << 4, 5 | 0 << 4, 0 | 0 << 4]  # lower 4 bits first; 0: escaped
    escaped = [0, 16, 0, 255, 40, 99]
    assert packed.steps.tolist() == pairs + escaped + [0]  # and the spare byte
    assert packed.escapes.tolist() == [5, 7, 8, 11]
    assert packed.columns().tolist() == [0, 3, 19, 20, 7, 7, 5, 260, 300, 399]
    owned = [matrix[1, 7], 0.0, matrix[2, 5], 0.0, matrix[2, 300], matrix[2, 399]]  # a pad, a bridge
    assert packed.vals[4:].tolist() == [float(v) for v in owned]
    assert torch.equal(packed.to_dense(), matrix * mask)


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


def test_compact_steps_take_4_5_bytes_a_weight_and_one_per_escape():
    matrix = torch.randn(1000, 1000)
    mask = torch.rand(1000, 1000, generator=torch.Generator().manual_seed(0)) < 0.1
    byte, compact = DeltaCSR.from_masked(matrix, mask), DeltaCSR.from_masked(matrix, mask, compact=True)
    steps = byte.steps
    escaped = int(((steps == 0) | (steps > MAX_NIBBLE)).sum())  # a fifth of the steps at 10% kept at random
    pads = int((np.diff(byte.row_ptr) % 2).sum())
    arrays = 4.5 * (byte.nnz + pads) + escaped + pads  # values and 4-bit steps; escaped steps (the pads' too)
    assert arrays < compact.nbytes < arrays + 12 * 1001  # row pointers, escape starts, blocks, the spare byte
    assert compact.nbytes < 0.97 * byte.nbytes


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
