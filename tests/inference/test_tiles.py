"""Register-tiled row sums: what the sparse convolution and feature-major linear kernels add up."""

import os
import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import config as numba_config
from numba import njit

from rsn2.inference import tiles

# widths below a narrow tile, at and around each tile width (shifted last tiles of each kind), several wide tiles
WIDTHS = [1, 5, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 40, 48, 63, 64, 65, 78, 80, 96, 97, 118, 130, 286, 576, 1086]


@pytest.mark.parametrize("width", WIDTHS)
def test_tap_rows_sums_each_entrys_shifted_row_and_writes_only_the_span(width):
    rng = np.random.default_rng(width)
    n = 37
    offsets = rng.integers(0, 50, n).astype(np.uint32)
    vals = rng.standard_normal(n).astype(np.float32)
    src = rng.standard_normal(50 + width).astype(np.float32)
    dst = np.full(width + 8, np.nan, np.float32)
    tiles.tap_rows(3, 30, offsets, vals, src, dst, width)
    expected = sum(vals[k] * src[offsets[k] : offsets[k] + width].astype(np.float64) for k in range(3, 30))
    np.testing.assert_allclose(dst[:width], expected, rtol=1e-5, atol=1e-5)
    assert np.isnan(dst[width:]).all()


@pytest.mark.parametrize("width", WIDTHS)
def test_step_rows_sums_the_rows_its_steps_name(width):
    rng = np.random.default_rng(width)
    n = 41
    steps = rng.integers(0, 4, n).astype(np.uint8)
    vals = rng.standard_normal(n).astype(np.float32)
    columns = np.cumsum(steps)
    src = rng.standard_normal((int(columns[-1]) + 3, width + 5)).astype(np.float32)  # wider than used
    dst = np.full(width + 8, np.nan, np.float32)
    tiles.step_rows(0, n, steps, vals, src, dst, width)
    expected = (vals[:, None].astype(np.float64) * src[columns, :width]).sum(axis=0)
    np.testing.assert_allclose(dst[:width], expected, rtol=1e-5, atol=1e-5)
    assert np.isnan(dst[width:]).all()


@pytest.mark.parametrize("width", WIDTHS)
def test_nibble_rows_sum_the_rows_their_compact_steps_name(width):
    """A row of a compact share (steps of 0, 1-15 and escaped ones past 15) sums the rows it names, as
    :func:`step_rows` does for one-byte steps; the pair loop and the narrow rows' loop alike."""
    import torch

    from rsn2.inference import DeltaCSR

    rng = np.random.default_rng(width)
    n_cols = 400
    mask = torch.from_numpy(rng.random((2, n_cols)) < 0.12)
    mask[1, 0] = True  # row 1 starts at column 0: a step of 0, escaped
    packed = DeltaCSR.from_masked(torch.randn(2, n_cols), mask, compact=True)
    assert (packed.entry_steps() > 15).any() and (packed.entry_steps() == 0).any()
    src = rng.standard_normal((n_cols, width + 5)).astype(np.float32)  # wider than used
    for row in range(2):
        lo, hi = int(packed.row_ptr[row]), int(packed.row_ptr[row + 1])
        dst = np.full(width + 8, np.nan, np.float32)
        tiles.nibble_rows(lo, hi, packed.steps, packed.escapes[row], packed.vals, src, dst, width)
        columns = packed.columns()[lo:hi]
        expected = (packed.vals[lo:hi, None].astype(np.float64) * src[columns, :width]).sum(axis=0)
        np.testing.assert_allclose(dst[:width], expected, rtol=1e-5, atol=1e-5)
        assert np.isnan(dst[width:]).all()


def test_no_entries_give_zeros():
    dst = np.full(70, np.nan, np.float32)
    empty = np.zeros(0, np.uint32)
    tiles.tap_rows(0, 0, empty, np.zeros(0, np.float32), np.ones(80, np.float32), dst, 70)
    assert (dst == 0).all()


def test_the_slp_setting_is_on_only_while_a_wrapped_function_compiles():
    seen = []

    @njit
    def add_one(x):  # pragma: no cover - compiled
        return x + 1

    plain_compile = add_one.compile

    def spy(sig):
        seen.append(numba_config.SLP_VECTORIZE)
        return plain_compile(sig)

    add_one.compile = spy
    tiles.slp_compiled(add_one)
    assert numba_config.SLP_VECTORIZE == 0  # Numba's default, which other compiled code keeps
    assert add_one(1.0) == 2.0 and add_one(1) == 2  # two signatures, two compilations
    assert seen == [1, 1] and numba_config.SLP_VECTORIZE == 0


@pytest.mark.slow  # compiles every tile in an empty cache
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="checks x86 vector instructions")
def test_freshly_compiled_tiles_hold_packed_multiply_adds(tmp_path):
    """The accumulators became vector registers: compiled without the SLP vectorizer they stay scalar
    (the kernels would still be right, at a third of the speed)."""
    script = textwrap.dedent(
        """
        import re
        import numpy as np
        from rsn2.inference import tiles
        f32, u32, u8 = np.float32, np.uint32, np.uint8
        tiles.tap_rows(0, 1, np.zeros(1, u32), np.ones(1, f32), np.ones(200, f32), np.zeros(200, f32), 130)
        tiles.step_rows(0, 1, np.zeros(1, u8), np.ones(1, f32), np.ones((2, 130), f32), np.zeros(130, f32), 130)
        import torch
        from rsn2.inference import DeltaCSR
        mask = torch.rand(2, 400, generator=torch.Generator().manual_seed(0)) < 0.12
        packed = DeltaCSR.from_masked(torch.randn(2, 400), mask, compact=True)
        lo, hi = int(packed.row_ptr[0]), int(packed.row_ptr[1])
        src = np.ones((400, 130), f32)
        tiles.nibble_rows(lo, hi, packed.steps, packed.escapes[0], packed.vals, src, np.zeros(130, f32), 130)
        for kernel in (tiles.tap_rows, tiles.step_rows, tiles.nibble_rows):
            asm = "".join(kernel.inspect_asm().values())
            print(kernel.__name__, len(re.findall(r"vfmadd\\w*ps[^\\n]*[xyz]mm", asm)))
        """
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))  # an empty cache: compile here, not load
    env.pop("NUMBA_SLP_VECTORIZE", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    counts = dict(line.split() for line in done.stdout.strip().splitlines())
    if "fma" not in open("/proc/cpuinfo").read():  # pragma: no cover - CPUs without FMA units
        pytest.skip("this CPU has no fused multiply-add instructions")
    assert {name: int(n) >= tiles.WIDE // 16 for name, n in counts.items()} == dict.fromkeys(
        ("tap_rows", "step_rows", "nibble_rows"), True
    ), counts


def test_tile_width_pads_fewer_than_a_narrow_tile_to_one_tile():
    assert [tiles.tile_width(n) for n in (1, 3, 8, 9, 15, 16, 17, 100)] == [8, 8, 8, 16, 16, 16, 17, 100]
