"""Packed values held as bfloat16: rounded once when packed, widened exactly by every kernel, summed in float32."""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from numba import njit

from rsn2.errors import SpecError
from rsn2.inference import (
    ConvGeometry,
    DeltaCSR,
    FusedRun,
    SparsePolicy,
    SubnetworkKernel,
    TaskModel,
    kernels,
    tiles,
)
from rsn2.inference.values import as_float32, from_bfloat16_bits, to_bfloat16_bits, value_at
from rsn2.layers import MultitaskKernelLayer
from tests.inference.test_fused_run import _convnet, _mlp, _runs


def _bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).float()


def _rounded_network(net):
    """A copy of ``net`` whose multitask kernels hold bfloat16-rounded values: what a bfloat16 task reads."""
    out = copy.deepcopy(net)
    with torch.no_grad():
        for m in out.modules():
            if isinstance(m, MultitaskKernelLayer):
                m.weight.copy_(_bf16(m.weight))
    return out


@njit
def _read_all(vals):
    out = np.empty(vals.shape[0], np.float32)
    for k in range(vals.shape[0]):
        out[k] = value_at(vals, k)
    return out


def test_bits_are_torch_rounding_and_widen_exactly_in_python_and_compiled_code():
    x = torch.tensor([0.0, -0.0, 1.0, 1.00390625, 1.005859375, -3.14159, 1e-38, 3.0e38, float("inf"), float("nan")])
    bits = to_bfloat16_bits(x)
    assert bits.dtype == np.uint16
    expected = _bf16(x).numpy()
    np.testing.assert_array_equal(from_bfloat16_bits(bits), expected)  # NaN == NaN in this comparison
    np.testing.assert_array_equal(_read_all(bits), expected)
    np.testing.assert_array_equal(_read_all(x.numpy()), x.numpy())  # float32 arrays read as they are
    assert value_at(bits, 3) == float(expected[3])
    assert as_float32(x.numpy()) is not None and np.array_equal(as_float32(bits), expected, equal_nan=True)
    assert float(expected[4]) != float(x[4])  # 1.005859375 is not a bfloat16 number: rounded


@pytest.mark.parametrize("compact", [False, True])
def test_a_bfloat16_share_holds_the_rounded_values_in_3_bytes_a_weight(compact):
    gen = torch.Generator().manual_seed(0)
    matrix, mask = torch.randn(64, 700, generator=gen), torch.rand(64, 700, generator=gen) < 0.1
    full = DeltaCSR.from_masked(matrix, mask, compact=compact)
    half = DeltaCSR.from_masked(matrix, mask, compact=compact, values="bfloat16")
    assert (full.value_dtype, half.value_dtype) == ("float32", "bfloat16")
    assert half.vals.dtype == np.uint16 and half.vals.nbytes * 2 == full.vals.nbytes
    assert np.array_equal(half.steps, full.steps) and np.array_equal(half.row_ptr, full.row_ptr)
    torch.testing.assert_close(half.to_dense(), _bf16(matrix * mask), rtol=0, atol=0)
    assert not torch.equal(half.to_dense(), full.to_dense())
    with pytest.raises(SpecError, match="float32, bfloat16"):
        DeltaCSR.from_masked(matrix, mask, values="float16")


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("batch", [1, 3, 4, 9, 20])
def test_the_linear_kernels_sum_the_rounded_values(batch, compact):
    gen = torch.Generator().manual_seed(batch)
    matrix, mask = torch.randn(50, 300, generator=gen), torch.rand(50, 300, generator=gen) < 0.15
    packed = DeltaCSR.from_masked(matrix, mask, compact=compact, values="bfloat16")
    x = torch.randn(batch, 300, generator=gen).numpy()
    expected = x.astype(np.float64) @ _bf16(matrix * mask).double().numpy().T
    out = np.full((batch, 50), np.nan, np.float32)
    kernels.rows_gather(packed.row_ptr, packed.blocks, packed.steps, packed.escapes, packed.vals, x, out)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    xt = kernels.feature_major_input(x, 300)
    out_t = np.full((50, xt.shape[1]), np.nan, np.float32)
    kernels.feature_major(packed.row_ptr, packed.blocks, packed.steps, packed.escapes, packed.vals, xt, out_t)
    np.testing.assert_allclose(out_t[:, :batch].T, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("width", [5, 12, 40, 130])
def test_the_tiles_sum_the_rounded_values(width):
    rng = np.random.default_rng(width)
    n = 33
    vals32 = rng.standard_normal(n).astype(np.float32)
    bits, rounded = to_bfloat16_bits(vals32), _bf16(torch.from_numpy(vals32)).numpy().astype(np.float64)
    offsets = rng.integers(0, 50, n).astype(np.uint32)
    src = rng.standard_normal(50 + width).astype(np.float32)
    dst = np.full(width, np.nan, np.float32)
    tiles.tap_rows(0, n, offsets, bits, src, dst, width)
    expected = sum(rounded[k] * src[offsets[k] : offsets[k] + width] for k in range(n))
    np.testing.assert_allclose(dst, expected, rtol=1e-5, atol=1e-5)
    steps = rng.integers(0, 4, n).astype(np.uint8)
    columns = np.cumsum(steps)
    rows = rng.standard_normal((int(columns[-1]) + 1, width)).astype(np.float32)
    tiles.step_rows(0, n, steps, bits, rows, dst, width)
    np.testing.assert_allclose(dst, (rounded[:, None] * rows[columns]).sum(axis=0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_the_convolution_kernels_sum_the_rounded_values(stride):
    gen = torch.Generator().manual_seed(stride)
    weight = torch.randn(6, 3, 3, 3, generator=gen)
    mask = torch.rand(6, 3, 3, 3, generator=gen) < 0.3
    x = torch.randn(2, 3, 11, 11, generator=gen)
    policy = SparsePolicy(min_positions=0, conv_max_density=1.0, values="bfloat16")
    geometry = ConvGeometry((3, 3), (stride, stride), (1, 1), (1, 1))
    share = SubnetworkKernel(weight, mask, None, geometry, policy)
    assert share.packed is not None and share.packed.value_dtype == "bfloat16" and share.wants_sparse(x)
    expected = torch.nn.functional.conv2d(x, _bf16(weight * mask), None, stride, 1)
    torch.testing.assert_close(share(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 4, 5, 64])
@pytest.mark.parametrize("make", [_mlp, _convnet], ids=["mlp", "conv"])
def test_a_bfloat16_task_model_is_the_network_with_rounded_weights_on_every_path(make, batch):
    net, data = make()
    reference = _rounded_network(net)
    policy = SparsePolicy(values="bfloat16")
    for t, d in data.items():
        x = d.x[:batch]
        with torch.no_grad():
            expected, exact = reference(x, t), net(x, t)
        for fuse in (True, False):
            model = TaskModel.from_network(net, t, replace(policy, fuse=fuse))
            assert all(k.values == "bfloat16" for k in model.kernels())
            assert any(k.packed is not None for k in model.kernels())
            assert bool(_runs(model)) == fuse
            torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
        dense = TaskModel.from_network(net, t, policy, sparse=False)  # what the ONNX export runs
        torch.testing.assert_close(dense(x), expected, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(expected, exact, rtol=0, atol=1e-7)  # rounding is not a no-op


def test_bfloat16_shares_hold_fewer_bytes_and_the_policy_refuses_other_dtypes():
    net, _ = _mlp()
    t = net.task_names[0]
    full = TaskModel.from_network(net, t)
    half = TaskModel.from_network(net, t, SparsePolicy(values="bfloat16"))
    packed_full = sum(k.packed.nbytes for k in full.kernels() if k.packed is not None)
    packed_half = sum(k.packed.nbytes for k in half.kernels() if k.packed is not None)
    values = sum(k.packed.vals.nbytes for k in half.kernels() if k.packed is not None)
    assert packed_full - packed_half == values  # 2 bytes a value saved, nothing else changed
    assert half.nbytes < full.nbytes
    with pytest.raises(SpecError, match="packed values must be one of float32, bfloat16, got 'int8'"):
        SparsePolicy(values="int8")


def test_a_fused_run_refuses_members_holding_values_in_two_dtypes():
    net, _ = _mlp()
    t = net.task_names[0]
    full = TaskModel.from_network(net, t, SparsePolicy(fuse=False))
    half = TaskModel.from_network(net, t, SparsePolicy(fuse=False, values="bfloat16"))
    members = list(full.steps)
    members[0] = half.steps[0]
    with pytest.raises(SpecError, match="one dtype"):
        FusedRun(members, SparsePolicy())
