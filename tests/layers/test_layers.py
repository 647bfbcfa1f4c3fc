import pytest
import torch
from torch import nn

from rsn2.errors import OwnershipError, TaskError
from rsn2.layers import FREE, MultitaskConv2d, MultitaskLinear, reading, select_owned
from rsn2.layers.conv import laid_out_channels_last


def _run(layer, x, name):
    """``layer`` run as subnetwork ``name``."""
    with reading({layer: name}):
        return layer(x)


def _split(layer, names, seed=0):
    """Give each name a random disjoint share of the layer."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, len(names) + 1, layer.weight.shape, generator=gen)
    for i, name in enumerate(names):
        layer.add_subnetwork(name)
        layer.assign(name, ids == i)
    return ids


def test_linear_forward_reads_only_own_positions():
    layer = MultitaskLinear(6, 5)
    _split(layer, ["a", "b"])
    with torch.no_grad():
        layer.biases["a"].normal_()
    x = torch.randn(4, 6)
    out_a = _run(layer, x, "a")
    expected = x @ (layer.weight * (layer.owner == 0)).T + layer.biases["a"]
    torch.testing.assert_close(out_a, expected)
    with torch.no_grad():  # scribbling on b's and free positions leaves a unchanged
        layer.weight[layer.owner != 0] = 123.0
        layer.biases["b"].fill_(7.0)
    assert torch.equal(_run(layer, x, "a"), out_a)


def test_sole_owner_matches_plain_linear_and_conv():
    lin = MultitaskLinear(7, 3)
    lin.add_subnetwork("t")
    lin.assign("t", torch.ones(3, 7, dtype=torch.bool))
    ref = nn.Linear(7, 3)
    ref.weight.data.copy_(lin.weight.data)
    ref.bias.data.copy_(lin.biases["t"].data)
    x = torch.randn(5, 7)
    assert torch.equal(_run(lin, x, "t"), ref(x))

    conv = MultitaskConv2d(2, 3, (3, 2), stride=2, padding=1, dilation=(1, 2))
    conv.add_subnetwork("t")
    conv.assign("t", torch.ones_like(conv.owner, dtype=torch.bool))
    ref_c = nn.Conv2d(2, 3, (3, 2), stride=2, padding=1, dilation=(1, 2))
    ref_c.weight.data.copy_(conv.weight.data)
    ref_c.bias.data.copy_(conv.biases["t"].data)
    img = torch.randn(2, 2, 9, 9)
    assert torch.equal(_run(conv, img, "t"), ref_c(img))


@pytest.mark.parametrize("padding", [0, 1, "same", "valid"])
def test_conv_masked_forward(padding):
    conv = MultitaskConv2d(3, 4, 3, padding=padding)
    _split(conv, ["a", "b", "c"])
    img = torch.randn(2, 3, 8, 8)
    for sid, name in enumerate(conv.subnetworks):
        expected = torch.nn.functional.conv2d(
            img, conv.weight * (conv.owner == sid), conv.biases[name], padding=padding
        )
        torch.testing.assert_close(_run(conv, img, name), expected)


def test_task_axis_view_is_disjoint_and_complete():
    layer = MultitaskLinear(5, 4)
    ids = _split(layer, ["a", "b", "c"])
    kernel, bias = layer.task_axis_view()
    assert kernel.shape == (3, 4, 5) and bias.shape == (3, 4)
    assert int((kernel != 0).sum(dim=0).max()) <= 1
    owned = ids < 3
    assert torch.equal(kernel.sum(dim=0)[owned], layer.weight.detach()[owned])
    assert torch.equal(kernel.sum(dim=0)[~owned], torch.zeros(int((~owned).sum())))


def test_assign_refuses_overlap_and_bad_masks():
    layer = MultitaskLinear(3, 3)
    layer.add_subnetwork("a")
    layer.add_subnetwork("b")
    first = torch.zeros(3, 3, dtype=torch.bool)
    first[0] = True
    layer.assign("a", first)
    before = layer.owner.clone()
    with pytest.raises(OwnershipError, match="already owned"):
        layer.assign("b", torch.ones(3, 3, dtype=torch.bool))
    assert torch.equal(layer.owner, before)
    with pytest.raises(OwnershipError, match="bool tensor of shape"):
        layer.assign("b", torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(TaskError, match="no subnetwork 'z'"):
        _run(layer, torch.randn(1, 3), "z")
    with pytest.raises(TaskError, match="already exists"):
        layer.add_subnetwork("a")


def test_ownership_counts_and_repr():
    layer = MultitaskLinear(10, 10)
    layer.add_subnetwork("a")
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask[:3] = True
    layer.assign("a", mask)
    assert layer.ownership() == {"a": 30, "free": 70}
    assert layer.free_capacity == 70
    assert "a=30.0%" in repr(layer) and "free=70.0%" in repr(layer)


def test_state_dict_roundtrip_creates_subnetworks():
    src = MultitaskLinear(4, 4)
    _split(src, ["x", "y"])
    dst = MultitaskLinear(4, 4)
    dst.load_state_dict(src.state_dict())
    assert dst.subnetworks == ["x", "y"]
    assert torch.equal(dst.owner, src.owner)
    inp = torch.randn(2, 4)
    assert torch.equal(_run(dst, inp, "y"), _run(src, inp, "y"))


def test_load_state_dict_rejects_unknown_owner_ids():
    src = MultitaskLinear(4, 4)
    _split(src, ["x"])
    state = src.state_dict()
    state["owner"] = state["owner"].clone()
    state["owner"][0, 0] = 7
    with pytest.raises(OwnershipError, match="subnetwork id 7"):
        MultitaskLinear(4, 4).load_state_dict(state)
    assert FREE == 255


def test_remove_last_subnetwork_frees_positions():
    layer = MultitaskLinear(4, 4)
    _split(layer, ["a", "b"])
    layer.remove_last_subnetwork("b")
    assert layer.subnetworks == ["a"] and "b" not in layer.biases
    assert set(layer.ownership()) == {"a", "free"}
    with pytest.raises(TaskError):
        layer.remove_last_subnetwork("zzz")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("elsewhere", [float("nan"), float("inf"), float("-inf"), 3e38])
def test_select_owned_keeps_owned_values_and_exact_zeros_elsewhere(dtype, elsewhere):
    """Non-finite values off the mask never leak (NaN * 0 would), and finite values whose sum
    overflows (3e38, or inf in half precision) still come back exactly."""
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(40, 30, generator=gen) < 0.3
    weight = torch.randn(40, 30, generator=gen).to(dtype)
    weight[~mask] = torch.tensor(elsewhere).to(dtype)
    weight[mask.nonzero()[0].tolist()] = torch.tensor(3e38).to(dtype)  # an owned huge value stays
    out = select_owned(weight, mask, mask.to(dtype))
    assert out.dtype == dtype
    assert torch.equal(out[mask], weight[mask])
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))


def test_a_channels_last_conv_gives_a_one_channel_input_channels_last_strides():
    """A 1-channel batch is "contiguous" in both layouts; left NCHW, the convolution's output came back
    NCHW and the next channels_last convolution converted it (forward and backward)."""
    torch.manual_seed(0)
    layer = MultitaskConv2d(1, 8, 3)
    _split(layer, ["a", "b"])
    x = torch.rand(4, 1, 10, 10)
    assert x.is_contiguous(memory_format=torch.channels_last) and not laid_out_channels_last(x)
    expected = _run(layer, x, "a")
    assert not laid_out_channels_last(expected)  # a contiguous layer leaves the layout alone
    layer.to(memory_format=torch.channels_last)
    assert laid_out_channels_last(layer.weight)
    out = _run(layer, x, "a")
    assert laid_out_channels_last(out)
    torch.testing.assert_close(out, expected)
    assert not laid_out_channels_last(torch.rand(4, 1, 1, 1))  # both layouts' strides alike: neither


def test_select_owned_off_the_cpu_reads_nothing_back_from_the_device():
    """Off the CPU the selection is ``torch.where``, with no finiteness check read back to the host
    (on a GPU, a wait per masked layer). The meta device holds no values, so any read-back raises."""
    mask = torch.rand(5, 4) < 0.5
    out = select_owned(torch.randn(5, 4, device="meta"), mask.to("meta"), mask.float().to("meta"))
    assert out.device.type == "meta" and out.shape == (5, 4)
