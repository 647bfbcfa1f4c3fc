"""`rescale_lr`: pruned kernels learn at lr/sqrt(kept fraction); everything else at lr; isolation holds."""

import math

import pytest
import torch

from rsn2.errors import SpecError
from rsn2.network import MultitaskNetwork
from rsn2.network.dense_control import dense_control
from rsn2.selection import select_subnetworks
from rsn2.training import TrainConfig, fit_stage, train_stage
from rsn2.training.loop import subnetwork_lr_factors
from tests.helpers import mlp_spec, random_data


def _selected(keep: float = 0.25) -> MultitaskNetwork:
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec(keep=keep))
    select_subnetworks(net, ["t0", "t1"], method="magnitude")
    return net


def test_factors_are_one_over_sqrt_of_the_kept_fraction():
    net = _selected(keep=0.25)
    factors = subnetwork_lr_factors(net, ["t0"])
    owned = [layer for _, layer in net.multitask_layers() if "t0" in layer.subnetworks]
    assert set(factors) == {layer.weight for layer in owned}  # t1's head is left out
    assert sorted(round(f, 1) for f in factors.values()) == [1.0, 2.0, 2.0, 2.0]  # own head whole; trunk 25%
    for layer in owned:
        fraction = layer.owned_count("t0") / layer.total_positions
        assert factors[layer.weight] == pytest.approx(1 / math.sqrt(fraction))
    assert all(f == 1.0 for f in subnetwork_lr_factors(dense_control(mlp_spec(), "t0"), ["t0"]).values())


def _one_sgd_step(rescale_lr: bool) -> tuple[MultitaskNetwork, dict[str, torch.Tensor]]:
    net = _selected()
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    data = random_data(net, "t0", n=40)
    config = TrainConfig(
        optimizer="sgd", lr=0.01, max_epochs=1, batch_size=64, val_fraction=0.25, progress=False, rescale_lr=rescale_lr
    )
    train_stage(net, {"t0": data}, config)  # one batch: one step
    return net, {k: v.detach() - before[k] for k, v in net.named_parameters()}


def test_kernels_take_scaled_steps_and_the_rest_plain_ones():
    net, plain = _one_sgd_step(False)
    _, scaled = _one_sgd_step(True)
    factors = {name: subnetwork_lr_factors(net, ["t0"]).get(p) for name, p in net.named_parameters()}
    moved_kernels = 0
    for name, delta in plain.items():
        factor = factors.get(name) or 1.0
        torch.testing.assert_close(scaled[name], delta * factor, rtol=1e-4, atol=1e-7)
        moved_kernels += factor > 1 and bool(delta.abs().sum() > 0)
    assert moved_kernels == 3  # the three trunk kernels moved, and by the factor


def test_frozen_subnetworks_stay_identical_with_rescale_lr():
    net = _selected()
    config = TrainConfig(max_epochs=2, batch_size=16, progress=False, rescale_lr=True)
    fit_stage(net, {"t0": random_data(net, "t0")}, config)
    trunk = [layer for _, layer in net.multitask_layers() if {"t0", "t1"} <= set(layer.subnetworks)]
    frozen = [(layer, layer.weight.detach().clone()) for layer in trunk]
    fit_stage(net, {"t1": random_data(net, "t1", seed=1)}, config)
    assert len(frozen) == 3
    for layer, before in frozen:
        t0, t1 = layer.mask("t0"), layer.mask("t1")
        assert torch.equal(layer.weight.detach()[t0], before[t0])
        assert not torch.equal(layer.weight.detach()[t1], before[t1])


def test_rescale_lr_is_validated_and_excludes_a_custom_optimizer():
    with pytest.raises(SpecError, match="rescale_lr must be true or false"):
        TrainConfig(rescale_lr="yes")
    net = _selected()
    with pytest.raises(SpecError, match="optimizer_factory"):
        train_stage(
            net,
            {"t0": random_data(net, "t0")},
            TrainConfig(max_epochs=1, progress=False, rescale_lr=True),
            optimizer_factory=lambda ps: torch.optim.SGD(ps, lr=0.1),
        )
