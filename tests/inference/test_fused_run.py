"""A task's consecutive layers in one compiled call: what its layers compute one by one."""

import copy

import numpy as np
import pytest
import torch
from numba.typed import List as TypedList
from torch import nn

from rsn2.errors import SpecError
from rsn2.inference import (
    DeltaCSR,
    FusedRun,
    SparsePolicy,
    SubnetworkKernel,
    TaskModel,
    kernels,
    task_models,
)
from rsn2.inference.op_table import LINEAR, op_row
from rsn2.inference.tiles import tile_width
from rsn2.network import MultitaskNetwork, NetworkSpec, TaskSpec, conv2d, flatten, linear, maxpool2d, relu
from rsn2.selection import select_subnetworks
from tests.helpers import mlp_spec, random_data


def _selected(spec: NetworkSpec, seed: int = 0):
    torch.manual_seed(seed)
    net = MultitaskNetwork(spec)
    data = {t: random_data(net, t, n=64, seed=i) for i, t in enumerate(net.task_names)}
    select_subnetworks(net, net.task_names, {t: (d.x[:16], d.y[:16]) for t, d in data.items()})
    return net.eval(), data


def _mlp():
    """Three 100-wide linear layers (10,000 positions each) with 10% subnetworks: packed by the policy."""
    return _selected(mlp_spec(width=100, keep=0.1, in_features=80))


def _convnet(keep: float = 0.2):
    """'same' and 'valid' convolutions, a dilation, max pools (one with an uneven input), flatten, linear."""
    trunk = (
        conv2d(2, 24, 3, padding="same"),
        relu(),
        conv2d(24, 32, 3, dilation=2),
        relu(),
        maxpool2d(2),
        conv2d(32, 32, 3, padding=1),
        relu(),
        maxpool2d(3, stride=2),
        flatten(),
        linear(32 * 2 * 2, 64),
        relu(),
    )
    tasks = tuple(
        TaskSpec(f"t{i}", "classification", (2, 15, 15), head=[linear(64, 5)], keep_fraction=keep) for i in range(2)
    )
    return _selected(NetworkSpec(trunk, tasks))


def _runs(model):
    return [m for m in model.steps if isinstance(m, FusedRun)]


def _spy(monkeypatch, name="run_fused"):
    """Batch sizes of the calls to ``kernels.<name>`` (its activations: ``(B, .)`` or ``(., B)`` feature-major)."""
    calls = []
    original = getattr(kernels, name)

    def spy(*args):
        act = args[-6] if name == "run_fused" else args[-2]
        calls.append(act.shape[0] if name == "run_fused" else act.shape[1])
        return original(*args)

    monkeypatch.setattr(kernels, name, spy)
    return calls


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 8, 9, 64])
def test_a_linear_run_computes_what_its_layers_compute_one_by_one(batch, monkeypatch):
    net, data = _mlp()
    calls = _spy(monkeypatch)
    feature_major = _spy(monkeypatch, "feature_major_run")
    for t, d in data.items():
        model = TaskModel.from_network(net, t)
        (run,) = _runs(model)
        assert len(run.layers) == 7  # the trunk's three kernels, their ReLUs and the head
        x = d.x[:batch]
        with torch.no_grad():
            layer_by_layer = run.layers(x)
            expected = net(x, t)
        torch.testing.assert_close(run(x), layer_by_layer, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    few = batch <= SparsePolicy().rows_kernel_max_batch  # one call either way: row by row, or feature-major
    assert calls == ([batch] * 2 * len(data) if few else [])
    assert feature_major == ([] if few else [tile_width(batch)] * 2 * len(data))  # columns: padded to a tile


@pytest.mark.parametrize("batch", [1, 2, 4, 5, 9, 64])
def test_a_conv_task_runs_whole_in_one_call_equal_to_the_network(batch, monkeypatch):
    net, data = _convnet()
    calls = _spy(monkeypatch)
    for t, d in data.items():
        model = TaskModel.from_network(net, t)
        assert [type(m) for m in model.steps] == [FusedRun]  # convs, pools, flatten, linear and head
        assert model.steps[0].sliced
        x = d.x[:batch]
        with torch.no_grad():
            expected = net(x, t)
        out = model(x)
        assert out.shape == expected.shape and out.is_contiguous()
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    per_call = SparsePolicy().fused_max_batch
    slices = [per_call] * (batch // per_call) + ([batch % per_call] if batch % per_call else [])
    assert calls == slices * len(data)


@pytest.mark.parametrize("batch", [5, 12])
def test_a_conv_run_takes_large_batches_in_slices(batch, monkeypatch):
    net, data = _convnet()
    calls = _spy(monkeypatch)
    model = TaskModel.from_network(net, "t0", SparsePolicy(fused_max_batch=4))
    x = data["t0"].x[:batch]
    with torch.no_grad():
        expected = net(x, "t0")
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    assert calls == [4] * (batch // 4) + ([batch % 4] if batch % 4 else [])


def test_a_run_with_dense_convolutions_takes_only_a_few_samples_in_one_call(monkeypatch):
    net, data = _convnet(keep=0.45)  # shares above conv_max_density: small dense kernels, packed by the run
    calls = _spy(monkeypatch)
    model = TaskModel.from_network(net, "t0")
    (run,) = _runs(model)
    assert not run.sliced and all(k.packed is None for k in model.kernels() if k.geometry is not None)
    few = SparsePolicy().rows_kernel_max_batch
    for batch in (few, few + 1):
        x = data["t0"].x[:batch]
        with torch.no_grad():
            expected = net(x, "t0")
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    assert calls == [few]  # beyond a few samples, layer by layer (the dense operators)


def test_nan_and_infinity_propagate_as_in_the_layers():
    net, data = _convnet()
    packed = SparsePolicy(min_positions=0)  # the layers skip unowned positions, as the run does (0 * NaN)
    (whole,) = _runs(TaskModel.from_network(net, "t0", packed))
    run = FusedRun(list(whole.layers[:5]), packed)  # two convs, their ReLUs, a max pool
    x = data["t0"].x[:1].clone()
    x[0, 0, 3, 4] = float("nan")
    x[0, 1, 9, 9] = float("inf")
    with torch.no_grad():
        fused = run(x)
        expected = run.layers(x)
    nan = torch.isnan(expected)
    assert nan.any() and not nan.all()  # pooling windows that mix NaN and numbers: the case is not vacuous
    assert torch.equal(torch.isnan(fused), nan)
    torch.testing.assert_close(fused[~nan], expected[~nan], rtol=1e-5, atol=1e-5)


def test_what_joins_a_run_and_what_breaks_it():
    net, _ = _mlp()
    assert not _runs(TaskModel.from_network(net, "t0", SparsePolicy(enabled=False)))  # nothing packed: no run
    model = TaskModel.from_network(net, "t0", SparsePolicy(fuse=False))  # packed, one call per layer
    assert not _runs(model) and any(k.packed is not None for k in model.kernels())
    strided = NetworkSpec(
        (conv2d(1, 16, 3), relu(), conv2d(16, 16, 3, stride=2), relu(), flatten(), linear(16 * 5 * 5, 32), relu()),
        (TaskSpec("t", "classification", (1, 14, 14), head=[linear(32, 3)], keep_fraction=0.2),),
    )
    net, _ = _selected(strided)
    kinds = [type(m).__name__ for m in TaskModel.from_network(net, "t").steps]
    # the stride-2 conv runs on its own; a run needs two layers with weights (the first conv has one)
    assert kinds == ["SubnetworkKernel", "ReLU", "SubnetworkKernel", "ReLU", "FusedRun"]
    with pytest.raises(SpecError, match="at least two"):
        FusedRun([nn.ReLU(), nn.Flatten()], SparsePolicy())
    with pytest.raises(SpecError, match="at least two"):
        FusedRun([*_runs(TaskModel.from_network(net, "t"))[0].layers, nn.Dropout()], SparsePolicy())


def test_nbytes_counts_what_a_run_packs_beside_its_layers():
    net, data = _convnet()
    model = TaskModel.from_network(net, "t0")
    (run,) = _runs(model)
    dense_only = [m for m in run.layers if isinstance(m, SubnetworkKernel) and m.packed is None]
    assert dense_only  # the 100% head at least
    kernels_bytes = sum(k.nbytes for k in model.kernels())
    before = model.nbytes
    assert before == kernels_bytes + run.nbytes and run.nbytes > 0
    model(data["t0"].x[:1])  # the first call makes the conv tap offsets for this input size
    assert run.nbytes > before - kernels_bytes


def test_copies_of_a_task_model_rebuild_the_compiled_plan():
    net, data = _convnet()
    model = TaskModel.from_network(net, "t1")
    x = data["t1"].x[:1]
    first = model(x)
    twin = copy.deepcopy(model)
    (run,) = _runs(twin)
    assert run._plans == {}
    assert torch.equal(twin(x), first)
    head = run.layers[-1]  # a dense share the run reads in place: the copy's own weight, not a second copy
    assert isinstance(head, SubnetworkKernel) and head.packed is None
    assert np.shares_memory(run._held[len(run.layers) - 1].vals, head.weight.numpy())


def test_a_run_refuses_inputs_its_layers_do_not_take():
    net, _ = _convnet()
    (run,) = _runs(TaskModel.from_network(net, "t0"))
    with pytest.raises(SpecError, match="2 input channels"):
        run(torch.rand(1, 3, 15, 15))
    with pytest.raises(SpecError, match="smaller than the kernel"):
        run(torch.rand(1, 2, 3, 3))
    net, _ = _mlp()
    (run,) = _runs(TaskModel.from_network(net, "t0"))
    with pytest.raises(SpecError, match="80 inputs"):
        run(torch.rand(1, 81))


def test_served_models_fuse_too():
    net, data = _convnet()
    models = task_models(net, dense_budget=0.0)
    x = data["t1"].x[:3]
    with torch.no_grad():
        torch.testing.assert_close(models["t1"](x), net(x, "t1"), rtol=1e-5, atol=1e-5)
    assert _runs(models["t1"])


def test_large_dense_members_keep_large_batches_layer_by_layer(monkeypatch):
    from rsn2.inference import fused_run

    net, data = _selected(mlp_spec(width=100, keep=0.3, in_features=80))  # 30% shares: held dense
    (run,) = _runs(TaskModel.from_network(net, "t0"))
    assert run.feature_major  # dense members small enough: feature-major beyond a few samples
    monkeypatch.setattr(fused_run, "MAX_DENSE_POSITIONS", 1000)
    model = TaskModel.from_network(net, "t0")
    (run,) = _runs(model)
    assert not run.feature_major
    calls = _spy(monkeypatch, "feature_major_run")
    for batch in (1, 64):
        x = data["t0"].x[:batch]
        with torch.no_grad():
            torch.testing.assert_close(model(x), net(x, "t0"), rtol=1e-5, atol=1e-5)
    assert calls == []


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("n_b", [2, 3, 8, 13, 16])
def test_a_fused_linear_op_runs_feature_major_from_its_threshold(n_b, compact):
    """From the op's threshold (column 5; here 3 samples) a packed linear op sums feature-major:
    its input transposed into ``lin_in`` and padded with zeros to a whole tile; fewer samples take
    the row gather and leave that buffer alone."""
    gen = torch.Generator().manual_seed(n_b)
    n_in, n_out = 200, 300
    weight = torch.randn(n_out, n_in, generator=gen)
    mask = torch.rand(n_out, n_in, generator=gen) < 0.3
    bias = torch.randn(n_out, generator=gen)
    packed = DeltaCSR.from_masked(weight, mask, compact=compact)
    assert len(packed.vals) * n_b > kernels.SERIAL_ENTRIES  # parallel, not a head's serial rows
    ops = op_row(LINEAR, 0, inputs=n_in, outputs=n_out, relu=1, feature_major_from=3)[None]
    offsets = np.zeros(0, np.uint32)
    arrays = packed.row_ptr, packed.blocks, packed.steps, packed.escapes, offsets, packed.vals, bias.numpy()
    typed = [TypedList([a]) for a in arrays]
    x = torch.randn(n_b, n_in, generator=gen)
    act_a = np.full((n_b, n_out), np.nan, dtype=np.float32)
    act_a[:, :n_in] = x.numpy()
    act_b = np.full((n_b, n_out), np.nan, dtype=np.float32)
    empty = np.zeros((n_b, 0), dtype=np.float32)
    width = tile_width(n_b)
    lin_in = np.full(width * n_out, np.nan, dtype=np.float32)
    lin_out = np.full(width * n_out, np.nan, dtype=np.float32)
    which = kernels.run_fused(ops, *typed, act_a, act_b, empty, empty, lin_in, lin_out)
    assert which == 1
    expected = torch.relu(x @ (weight * mask).T + bias)
    torch.testing.assert_close(torch.from_numpy(act_b), expected, rtol=1e-5, atol=1e-5)
    transposed = lin_in[: n_in * width].reshape(n_in, width)
    if n_b >= 3:
        assert np.array_equal(transposed[:, :n_b], x.numpy().T)
        assert np.all(transposed[:, n_b:] == 0)
    else:
        assert np.isnan(lin_in).all()


def test_an_op_row_names_every_field_of_its_kind_and_only_those():
    from rsn2.inference import op_table

    row = op_row(op_table.POOL, channels=3, height=8, width=8, kernel=2, stride=2, out_height=4, out_width=4)
    assert row[op_table.KIND] == op_table.POOL and row[op_table.POOL_STRIDE] == 2 and row[op_table.POOL_OUT_WIDTH] == 4
    assert len(row) == op_table.OP_FIELDS
    columns = [op_table.column(k, n) for k, names in op_table.FIELDS.items() for n in names]
    assert min(columns) == 2 and max(columns) == op_table.OP_FIELDS - 1  # kind and layer first, none past the end
    with pytest.raises(ValueError, match=r"takes fields \['elements'\], got \[\]"):
        op_row(op_table.RELU)
    with pytest.raises(ValueError, match="takes fields"):
        op_row(op_table.RELU, elements=4, relu=1)
