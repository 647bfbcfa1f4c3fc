"""The eval-mode sparse path: equal to the masked path, chosen automatically, rebuilt when weights change."""

import pytest
import torch

from rsn2.inference import SparsePolicy, get_policy, set_policy, sparse_policy
from rsn2.inference.plan import LayerPlan
from rsn2.layers import MultitaskConv2d, MultitaskLinear
from rsn2.network import MultitaskNetwork
from rsn2.selection import select_subnetworks
from tests.helpers import conv_spec, mlp_spec, random_data

ALWAYS = {"min_positions": 0, "linear_max_density": 1.0, "conv_max_density": 1.0, "conv_max_batch": 1 << 30}


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
    """The training-mode masked path (the definition of the layer's output)."""
    layer.train()
    with torch.no_grad():
        out = layer._apply_kernel(x, layer.weight * layer.mask(name), layer.biases[name])
    layer.eval()
    return out


def _spy(monkeypatch):
    calls = []
    original = LayerPlan.run_sparse

    def spy(self, x, policy):
        calls.append(tuple(x.shape))
        return original(self, x, policy)

    monkeypatch.setattr(LayerPlan, "run_sparse", spy)
    return calls


@pytest.mark.parametrize("batch", [1, 3, 4, 5, 64])
@pytest.mark.parametrize("name", ["a", "b"])
def test_linear_sparse_matches_masked(batch, name, monkeypatch):
    layer = _two_subnetworks(MultitaskLinear(70, 45)).eval()
    calls = _spy(monkeypatch)
    x = torch.randn(batch, 70)
    with torch.no_grad(), sparse_policy(**ALWAYS):
        out = layer(x, name)
    assert calls == [(batch, 70)]
    torch.testing.assert_close(out, _reference(layer, x, name), rtol=1e-5, atol=1e-5)


def test_linear_sparse_keeps_leading_dimensions():
    layer = _two_subnetworks(MultitaskLinear(20, 7)).eval()
    x = torch.randn(2, 3, 20)
    with torch.no_grad(), sparse_policy(**ALWAYS):
        out = layer(x, "a")
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
def test_conv_sparse_matches_masked(kwargs, size, batch, monkeypatch):
    layer = _two_subnetworks(MultitaskConv2d(5, 6, **kwargs)).eval()
    calls = _spy(monkeypatch)
    x = torch.randn(batch, 5, size, size)
    with torch.no_grad(), sparse_policy(**ALWAYS):
        out = layer(x, "a")
    assert calls, "the sparse path was not taken"
    torch.testing.assert_close(out, _reference(layer, x, "a"), rtol=1e-5, atol=1e-5)


def test_sparse_path_only_in_eval_without_autograd(monkeypatch):
    layer = _two_subnetworks(MultitaskLinear(30, 20))
    calls = _spy(monkeypatch)
    x = torch.randn(4, 30)
    with sparse_policy(**ALWAYS):
        layer.train()
        with torch.no_grad():
            layer(x, "a")
        layer.eval()
        out = layer(x, "a")  # autograd on: masked path, gradients flow
        assert out.requires_grad
        assert calls == []
        with torch.no_grad():
            layer(x, "a")
        with torch.inference_mode():
            layer(x, "a")
    assert len(calls) == 2


def test_policy_decides_by_density_size_and_batch(monkeypatch):
    calls = _spy(monkeypatch)
    layer = _two_subnetworks(MultitaskLinear(100, 100)).eval()  # a: ~15%, b: ~30%
    conv = _two_subnetworks(MultitaskConv2d(16, 16, 3)).eval()
    x, xc = torch.randn(2, 100), torch.randn(3, 16, 8, 8)
    with torch.no_grad():
        with sparse_policy(min_positions=0, linear_max_density=0.2):
            layer(x, "a")
            layer(x, "b")
        assert len(calls) == 1
        with sparse_policy(min_positions=20_000, linear_max_density=1.0):
            layer(x, "a")
        assert len(calls) == 1
        with sparse_policy(enabled=False, **{k: v for k, v in ALWAYS.items()}):
            layer(x, "a")
        assert len(calls) == 1
        with sparse_policy(min_positions=0, conv_max_density=1.0, conv_max_batch=2):
            conv(xc, "a")  # batch 3 > 2: dense
        assert len(calls) == 1
        with sparse_policy(min_positions=0, conv_max_density=1.0, conv_max_batch=3):
            conv(xc, "a")
        assert len(calls) == 2


def test_plan_is_cached_and_rebuilt_when_weights_change():
    layer = _two_subnetworks(MultitaskLinear(40, 30)).eval()
    x = torch.randn(2, 40)
    with torch.no_grad(), sparse_policy(**ALWAYS):
        first = layer(x, "a")
        plan = layer.inference_plan("a")
        assert layer.inference_plan("a") is plan  # cached
        layer(x, "a")
        assert layer.inference_plan("a") is plan
        layer.weight.mul_(2.0)  # an in-place change, as an optimizer step makes
        second = layer(x, "a")
        assert layer.inference_plan("a") is not plan
        bias = layer.biases["a"]
        torch.testing.assert_close(second - bias, 2 * (first - bias), rtol=1e-5, atol=1e-5)
        plan = layer.inference_plan("a")
        layer.biases["a"].add_(1.0)
        third = layer(x, "a")
        assert layer.inference_plan("a") is not plan
        torch.testing.assert_close(third, second + 1.0, rtol=1e-5, atol=1e-5)
        layer.load_state_dict({k: v.clone() * 0 if k == "weight" else v for k, v in layer.state_dict().items()})
        torch.testing.assert_close(layer(x, "a"), layer.biases["a"].expand(2, -1))


def test_new_selection_invalidates_plans():
    layer = MultitaskLinear(40, 30).eval()
    layer.add_subnetwork("a")
    layer.assign("a", torch.rand(30, 40, generator=torch.Generator().manual_seed(1)) < 0.1)
    x = torch.randn(1, 40)
    with torch.no_grad(), sparse_policy(**ALWAYS):
        before = layer(x, "a")
        layer.add_subnetwork("b")
        layer.assign("b", layer.free_mask & (torch.rand(30, 40) < 0.5))
        assert torch.equal(layer(x, "a"), before)  # a's positions did not change
        torch.testing.assert_close(layer(x, "b"), _reference(layer, x, "b"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spec", [mlp_spec, conv_spec])
def test_network_outputs_match_masked_path(spec):
    torch.manual_seed(0)
    net = MultitaskNetwork(spec())
    data = {t: random_data(net, t, seed=i) for i, t in enumerate(net.task_names)}
    select_subnetworks(net, net.task_names, {t: (d.x[:16], d.y[:16]) for t, d in data.items()})
    net.eval()
    for t, d in data.items():
        with torch.no_grad():
            with sparse_policy(**ALWAYS):
                fast = net(d.x, t)
            with sparse_policy(enabled=False):
                masked = net(d.x, t)
        torch.testing.assert_close(fast, masked, rtol=1e-5, atol=1e-5)


def test_set_policy_validates_and_returns_previous():
    before = get_policy()
    previous = set_policy(linear_max_density=0.5)
    try:
        assert previous is before and get_policy().linear_max_density == 0.5
    finally:
        set_policy(before)
    assert get_policy() is before
    with pytest.raises(ValueError, match="linear_max_density must be in"):
        SparsePolicy(linear_max_density=1.5)
    with pytest.raises(ValueError, match="conv_max_batch must be >= 0"):
        SparsePolicy(conv_max_batch=-1)


def test_float64_and_other_devices_use_dense_path(monkeypatch):
    calls = _spy(monkeypatch)
    layer = _two_subnetworks(MultitaskLinear(30, 20)).double().eval()
    with torch.no_grad(), sparse_policy(**ALWAYS):
        out = layer(torch.randn(2, 30, dtype=torch.float64), "a")
    assert out.dtype == torch.float64 and calls == []


def test_inputs_that_require_grad_and_channels_last_inputs_work():
    layer = _two_subnetworks(MultitaskLinear(30, 20)).eval()
    x = torch.randn(3, 30, requires_grad=True)
    with torch.no_grad(), sparse_policy(**ALWAYS):
        out = layer(x, "a")
    torch.testing.assert_close(out, _reference(layer, x.detach(), "a"), rtol=1e-5, atol=1e-5)
    conv = _two_subnetworks(MultitaskConv2d(4, 6, 3, padding=1)).eval()
    xc = torch.randn(2, 4, 7, 7).to(memory_format=torch.channels_last)
    with torch.no_grad(), sparse_policy(**ALWAYS):
        out = conv(xc, "b")
    torch.testing.assert_close(out, _reference(conv, xc.contiguous(), "b"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_plans_follow_optimizer_steps_even_fused_ones(fused):
    layer = _two_subnetworks(MultitaskLinear(40, 30))
    x = torch.randn(5, 40)
    opt = torch.optim.Adam(layer.parameters(), lr=0.1, fused=fused)
    layer.eval()  # stays in eval mode: only the optimizer step can tell the plan it is stale
    with torch.no_grad():
        before = layer(x, "a")
    layer(x, "a").square().sum().backward()  # autograd on: the masked path
    opt.step()
    with torch.no_grad():
        after = layer(x, "a")
    assert not torch.equal(after, before)
    torch.testing.assert_close(after, _reference(layer, x, "a"), rtol=1e-5, atol=1e-5)


def test_data_edits_need_clear_inference_cache():
    layer = _two_subnetworks(MultitaskLinear(40, 30)).eval()
    x = torch.randn(2, 40)
    with torch.no_grad():
        before = layer(x, "a")
        layer.weight.data.zero_()  # bypasses version counters
        assert torch.equal(layer(x, "a"), before)  # documented: the plan cannot see this
        layer.clear_inference_cache()
        torch.testing.assert_close(layer(x, "a"), layer.biases["a"].expand(2, -1))


def test_wrong_input_sizes_are_refused_not_read_out_of_bounds():
    layer = _two_subnetworks(MultitaskLinear(30, 20)).eval()
    conv = _two_subnetworks(MultitaskConv2d(4, 6, 3)).eval()
    with torch.no_grad(), sparse_policy(**ALWAYS):
        with pytest.raises(ValueError, match="last dimension must be 30"):
            layer(torch.randn(2, 31), "a")
        with pytest.raises(ValueError, match="must have 4 channels"):
            conv(torch.randn(1, 5, 8, 8), "a")
        with pytest.raises(ValueError, match="smaller than the kernel"):
            conv(torch.randn(1, 4, 2, 2), "a")
