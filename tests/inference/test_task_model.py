"""Per-task inference: a task's weights copied out, equal to the masked path, sparse where the policy says."""

import pytest
import torch

from rsn2.errors import TaskError
from rsn2.inference import SparsePolicy, SubnetworkKernel, TaskModel
from rsn2.inference import policy as policy_module
from rsn2.inference.packed import MAX_STEP
from rsn2.layers import MultitaskConv2d, MultitaskLinear, reading
from rsn2.network import MultitaskNetwork
from rsn2.selection import select_subnetworks
from rsn2.training import TrainConfig, fit_stage
from tests.helpers import conv_spec, mlp_spec, random_data

ALWAYS = SparsePolicy(min_positions=0, linear_max_density=1.0, conv_max_density=1.0, conv_max_batch=1 << 30)
NEVER = SparsePolicy(enabled=False)
COMPACT = SparsePolicy(
    min_positions=0, linear_max_density=1.0, conv_max_density=1.0, conv_max_batch=1 << 30, compact_steps=True
)


def _two_subnetworks(layer, seed=0):
    for name in ("a", "b"):
        layer.add_subnetwork(name)
    u = torch.rand(layer.weight.shape, generator=torch.Generator().manual_seed(seed))
    layer.assign("a", u < 0.15)
    layer.assign("b", u > 0.7)
    with torch.no_grad():
        for b in layer.biases.values():
            b.normal_()
    return layer


def _reference(layer, x, name):
    """The layer's masked path (the definition of a subnetwork's output)."""
    with torch.no_grad():
        with reading({layer: name}):
            return layer(x)


def _spy(monkeypatch):
    calls = []
    for method in ("_linear_sparse", "_conv_sparse"):
        original = getattr(SubnetworkKernel, method)

        def spy(self, x, original=original):
            calls.append(tuple(x.shape))
            return original(self, x)

        monkeypatch.setattr(SubnetworkKernel, method, spy)
    return calls


@pytest.mark.parametrize("policy", [ALWAYS, COMPACT], ids=["byte-steps", "compact-steps"])
@pytest.mark.parametrize("batch", [1, 3, 4, 5, 64])
@pytest.mark.parametrize("name", ["a", "b"])
def test_linear_sparse_matches_masked(batch, name, policy, monkeypatch):
    layer = _two_subnetworks(MultitaskLinear(70, 45))
    kernel = SubnetworkKernel.from_layer(layer, name, policy)
    assert kernel.packed is not None and kernel.packed.compact == policy.compact_steps
    calls = _spy(monkeypatch)
    x = torch.randn(batch, 70)
    out = kernel(x)
    assert calls == [(batch, 70)]
    torch.testing.assert_close(out, _reference(layer, x, name), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("policy", [ALWAYS, COMPACT], ids=["byte-steps", "compact-steps"])
@pytest.mark.parametrize("batch", [1, 4, 64])
@pytest.mark.parametrize("share", [0.003, 0.4])
def test_wide_linear_shares_with_bridged_gaps_and_long_rows_match_masked(batch, share, policy):
    layer = MultitaskLinear(1500, 30)
    layer.add_subnetwork("a")
    layer.assign("a", torch.rand(layer.weight.shape, generator=torch.Generator().manual_seed(1)) < share)
    kernel = SubnetworkKernel.from_layer(layer, "a", policy)
    assert kernel.packed is not None
    bridges = int((kernel.packed.entry_steps() == MAX_STEP).sum())
    assert (bridges > 0) == (share < 0.01)  # 0.3%: gaps of over 255 columns in most rows
    x = torch.randn(batch, 1500)
    torch.testing.assert_close(kernel(x), _reference(layer, x, "a"), rtol=1e-5, atol=1e-5)


def test_conv_share_with_bridged_gaps_matches_masked():
    layer = MultitaskConv2d(40, 8, 3)  # 360 columns per filter
    layer.add_subnetwork("a")
    mask = torch.rand(layer.weight.shape, generator=torch.Generator().manual_seed(2)) < 0.05
    mask[0] = False
    mask[0, 0, 0, 0] = mask[0, 39, 2, 2] = True  # columns 0 and 359 of filter 0: a bridged gap
    layer.assign("a", mask)
    kernel = SubnetworkKernel.from_layer(layer, "a", ALWAYS)
    assert kernel.packed is not None and len(kernel.packed.vals) > kernel.packed.nnz
    x = torch.randn(2, 40, 9, 9)
    torch.testing.assert_close(kernel(x), _reference(layer, x, "a"), rtol=1e-5, atol=1e-5)


def test_linear_sparse_keeps_leading_dimensions():
    layer = _two_subnetworks(MultitaskLinear(20, 7))
    x = torch.randn(2, 3, 20)
    out = SubnetworkKernel.from_layer(layer, "a", ALWAYS)(x)
    assert out.shape == (2, 3, 7)
    torch.testing.assert_close(out, _reference(layer, x, "a"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,size",
    [
        ({"kernel_size": 3}, 12),
        ({"kernel_size": 3, "padding": "same"}, 9),
        ({"kernel_size": (3, 2), "stride": 2, "padding": 1}, 11),
        ({"kernel_size": 3, "dilation": 2, "padding": (2, 1)}, 10),
        ({"kernel_size": 4, "padding": "same", "dilation": 1}, 8),
        ({"kernel_size": 1, "stride": (1, 3)}, 7),
    ],
)
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")  # PyTorch's, for the 4x4 case
def test_conv_sparse_matches_masked(kwargs, size, batch, monkeypatch):
    layer = _two_subnetworks(MultitaskConv2d(5, 6, **kwargs))
    kernel = SubnetworkKernel.from_layer(layer, "a", ALWAYS)
    calls = _spy(monkeypatch)
    x = torch.randn(batch, 5, size, size)
    out = kernel(x)
    assert calls, "the sparse path was not taken"
    torch.testing.assert_close(out, _reference(layer, x, "a"), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(SubnetworkKernel.from_layer(layer, "a", NEVER)(x), out, rtol=1e-5, atol=1e-5)


def test_policy_decides_by_density_size_and_batch(monkeypatch):
    calls = _spy(monkeypatch)
    layer = _two_subnetworks(MultitaskLinear(100, 100))  # a: ~15%, b: ~30%
    conv = _two_subnetworks(MultitaskConv2d(16, 16, 3))
    x, xc = torch.randn(2, 100), torch.randn(3, 16, 8, 8)
    SubnetworkKernel.from_layer(layer, "a", SparsePolicy(min_positions=0, linear_max_density=0.2))(x)
    SubnetworkKernel.from_layer(layer, "b", SparsePolicy(min_positions=0, linear_max_density=0.2))(x)
    assert len(calls) == 1
    SubnetworkKernel.from_layer(layer, "a", SparsePolicy(min_positions=20_000, linear_max_density=1.0))(x)
    assert len(calls) == 1
    SubnetworkKernel.from_layer(layer, "a", NEVER)(x)
    assert len(calls) == 1
    SubnetworkKernel.from_layer(conv, "a", SparsePolicy(min_positions=0, conv_max_density=1.0, conv_max_batch=2))(xc)
    assert len(calls) == 1  # batch 3 > 2: dense
    SubnetworkKernel.from_layer(conv, "a", SparsePolicy(min_positions=0, conv_max_density=1.0, conv_max_batch=3))(xc)
    assert len(calls) == 2


def test_a_kernel_holds_only_the_forms_it_can_use_and_only_its_share():
    layer = _two_subnetworks(MultitaskLinear(200, 100))  # a keeps ~15%
    sparse = SubnetworkKernel.from_layer(layer, "a", ALWAYS)
    dense = SubnetworkKernel.from_layer(layer, "a", NEVER)
    assert sparse.weight is None and sparse.packed is not None  # linear: the packed form only
    assert dense.packed is None and dense.weight is not None
    assert sparse.nbytes < 0.5 * dense.nbytes
    assert torch.equal(dense.weight != 0, layer.mask("a") & (layer.weight != 0))  # nothing of b's
    conv = _two_subnetworks(MultitaskConv2d(8, 8, 3))
    both = SubnetworkKernel.from_layer(conv, "a", SparsePolicy(min_positions=0, conv_max_density=1.0, conv_max_batch=1))
    assert both.packed is not None and both.weight is not None  # larger batches run dense
    packed = SubnetworkKernel.from_layer(conv, "a", SparsePolicy(min_positions=0, conv_max_density=1.0))
    assert packed.packed is not None and packed.weight is None  # no batch limit: sparse at every batch
    assert packed.wants_sparse(torch.randn(512, 8, 6, 6))


def test_compact_steps_hold_linear_shares_in_fewer_bytes_and_leave_convolutions_alone():
    layer = _two_subnetworks(MultitaskLinear(400, 300))
    byte, compact = (SubnetworkKernel.from_layer(layer, "a", p) for p in (ALWAYS, COMPACT))
    assert compact.packed is not None and compact.packed.compact and compact.nbytes < 0.97 * byte.nbytes
    conv = SubnetworkKernel.from_layer(_two_subnetworks(MultitaskConv2d(8, 8, 3)), "a", COMPACT)
    assert conv.packed is not None and not conv.packed.compact  # the convolution kernels read byte steps
    assert not SparsePolicy().compact_steps  # off by default: one-byte steps run faster


def test_a_kernel_is_a_snapshot_of_the_layer():
    layer = _two_subnetworks(MultitaskLinear(40, 30))
    x = torch.randn(2, 40)
    kernel = SubnetworkKernel.from_layer(layer, "a", ALWAYS)
    before = kernel(x)
    with torch.no_grad():
        layer.weight.mul_(2.0)
        layer.biases["a"].add_(1.0)
    assert torch.equal(kernel(x), before)
    torch.testing.assert_close(SubnetworkKernel.from_layer(layer, "a", ALWAYS)(x), _reference(layer, x, "a"))


@pytest.mark.parametrize("spec", [mlp_spec, conv_spec])
@pytest.mark.parametrize("policy", [ALWAYS, NEVER, None, COMPACT], ids=["always", "never", "default", "compact"])
def test_task_model_equals_the_network(spec, policy):
    torch.manual_seed(0)
    net = MultitaskNetwork(spec())
    data = {t: random_data(net, t, seed=i) for i, t in enumerate(net.task_names)}
    select_subnetworks(net, net.task_names, {t: (d.x[:16], d.y[:16]) for t, d in data.items()})
    net.eval()
    for t, d in data.items():
        model = TaskModel.from_network(net, t, policy)
        with torch.no_grad():
            expected = net(d.x, t)
        torch.testing.assert_close(model(d.x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(d.x[:1]), expected[:1], rtol=1e-5, atol=1e-5)


def test_task_model_of_a_trained_stage_holds_the_trained_weights():
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec(n_tasks=2, keep=0.4, width=32))
    data = {t: random_data(net, t, n=96, seed=i) for i, t in enumerate(net.task_names)}
    fit_stage(net, data, TrainConfig(batch_size=32, max_epochs=2, progress=False))
    for t, d in data.items():
        with torch.no_grad():
            torch.testing.assert_close(TaskModel.from_network(net, t, ALWAYS)(d.x), net(d.x, t), rtol=1e-5, atol=1e-5)


def test_task_model_refuses_unselected_tasks_and_wrong_inputs_by_name():
    net = MultitaskNetwork(mlp_spec(n_tasks=1))
    with pytest.raises(TaskError, match="'t0' has no subnetwork yet"):
        TaskModel.from_network(net, "t0")
    with pytest.raises(TaskError, match="unknown task"):
        TaskModel.from_network(net, "nope")
    d = random_data(net, "t0")
    select_subnetworks(net, ["t0"], {"t0": (d.x[:8], d.y[:8])})
    model = TaskModel.from_network(net, "t0")
    with pytest.raises(TaskError, match=r"task 't0' takes input of shape \(N, 8\), got \(8,\)"):
        model(torch.rand(8))
    with pytest.raises(TaskError, match=r"takes input of shape \(N, 8\), got \(2, 9\)"):
        model(torch.rand(2, 9))
    with pytest.raises(TaskError, match=r"takes floating-point input, got torch\.int64"):
        model(torch.ones(2, 8, dtype=torch.long))


def test_without_a_policy_a_task_model_runs_the_default_one_and_policies_validate():
    from tests.inference.test_fused_run import _mlp

    net, _ = _mlp()
    default = TaskModel.from_network(net, "t0")
    dense = TaskModel.from_network(net, "t0", SparsePolicy(enabled=False))
    assert [k.packed is not None for k in default.kernels()] == [
        k.packed is not None for k in TaskModel.from_network(net, "t0", SparsePolicy()).kernels()
    ]
    assert any(k.packed is not None for k in default.kernels())
    assert all(k.packed is None for k in dense.kernels())
    with pytest.raises(ValueError, match="linear_max_density must be in"):
        SparsePolicy(linear_max_density=1.5)
    with pytest.raises(ValueError, match="conv_max_batch must be >= 0 or None"):
        SparsePolicy(conv_max_batch=-1)
    with pytest.raises(ValueError, match="fused_max_batch must be >= 1"):
        SparsePolicy(fused_max_batch=0)


@pytest.mark.parametrize(("vendor", "rows_max"), [("GenuineIntel", 3), ("AuthenticAMD", 4), ("", 4)])
def test_the_row_gathers_batch_limit_defaults_by_cpu_vendor(monkeypatch, vendor, rows_max):
    monkeypatch.setattr(policy_module, "cpu_vendor", lambda: vendor)
    assert SparsePolicy().rows_kernel_max_batch == rows_max
    assert SparsePolicy(rows_kernel_max_batch=7).rows_kernel_max_batch == 7  # a value given is kept


def test_float64_inputs_and_weights_use_the_dense_path(monkeypatch):
    calls = _spy(monkeypatch)
    layer = _two_subnetworks(MultitaskLinear(30, 20)).double()
    out = SubnetworkKernel.from_layer(layer, "a", ALWAYS)(torch.randn(2, 30, dtype=torch.float64))
    assert out.dtype == torch.float64 and calls == []
    sparse_only = SubnetworkKernel.from_layer(_two_subnetworks(MultitaskLinear(30, 20)), "a", ALWAYS)
    x = torch.randn(2, 30, dtype=torch.float64)  # not for the sparse kernels: the dense form is made
    torch.testing.assert_close(sparse_only(x), sparse_only(x.float()).double(), rtol=1e-5, atol=1e-5)


def test_inputs_that_require_grad_and_channels_last_inputs_work():
    layer = _two_subnetworks(MultitaskLinear(30, 20))
    x = torch.randn(3, 30, requires_grad=True)
    with torch.no_grad():
        out = SubnetworkKernel.from_layer(layer, "a", ALWAYS)(x)
    torch.testing.assert_close(out, _reference(layer, x.detach(), "a"), rtol=1e-5, atol=1e-5)
    conv = _two_subnetworks(MultitaskConv2d(4, 6, 3, padding=1))
    xc = torch.randn(2, 4, 7, 7).to(memory_format=torch.channels_last)
    out = SubnetworkKernel.from_layer(conv, "b", ALWAYS)(xc)
    torch.testing.assert_close(out, _reference(conv, xc.contiguous(), "b"), rtol=1e-5, atol=1e-5)


def test_wrong_input_sizes_are_refused_not_read_out_of_bounds():
    linear = SubnetworkKernel.from_layer(_two_subnetworks(MultitaskLinear(30, 20)), "a", ALWAYS)
    conv = SubnetworkKernel.from_layer(_two_subnetworks(MultitaskConv2d(4, 6, 3)), "a", ALWAYS)
    with pytest.raises(ValueError, match="last dimension must be 30"):
        linear(torch.randn(2, 31))
    with pytest.raises(ValueError, match="must have 4 channels"):
        conv(torch.randn(1, 5, 8, 8))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        conv(torch.randn(1, 4, 2, 2))


def test_token_tasks_take_int64_ids():
    from rsn2.network import NetworkSpec, TaskSpec, embedding, flatten, linear, relu

    spec = NetworkSpec(
        (linear(12, 16), relu()),
        (
            TaskSpec(
                "txt",
                "classification",
                (3,),
                head=[linear(16, 2)],
                adapter=[embedding(50, 4), flatten()],
                keep_fraction=0.5,
            ),
        ),
    )
    net = MultitaskNetwork(spec)
    x = torch.randint(0, 50, (10, 3))
    select_subnetworks(net, ["txt"], {"txt": (x, torch.randint(0, 2, (10,)))})
    model = TaskModel.from_network(net, "txt", ALWAYS)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x, "txt"), rtol=1e-5, atol=1e-5)
    with pytest.raises(TaskError, match=r"takes int64 token ids, got torch\.float32"):
        model(x.float())


def test_copying_tasks_out_keeps_no_mask_per_task_in_the_network():
    """Serving copies every task out once; masks cached in the layers for that would stay in memory
    as long as the network does (a byte per position and task)."""
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec())
    select_subnetworks(net, net.task_names, method="random")
    layers = [m for m in net.modules() if isinstance(m, MultitaskLinear)]
    before = [len(layer._mask_cache) for layer in layers]
    for task in net.task_names:
        TaskModel.from_network(net, task, ALWAYS)
    assert [len(layer._mask_cache) for layer in layers] == before
    assert torch.equal(layers[0].mask(net.task_names[0], cache=False), layers[0].mask(net.task_names[0]))
