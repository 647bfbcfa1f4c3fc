"""Non-finite values never cross subnetworks: masking selects, it does not multiply NaN by zero."""

import pytest
import torch

from rsn2.inference import TaskModel
from rsn2.layers import FREE
from rsn2.network import MultitaskNetwork
from rsn2.selection import select_subnetworks
from rsn2.training import IsolationGuard, TrainConfig, fit_stage, predict
from rsn2.training.isolation import trainable_masks
from tests.helpers import conv_spec, mlp_spec, random_data

FAST = TrainConfig(batch_size=16, max_epochs=1, progress=False)


@pytest.mark.parametrize("spec", [mlp_spec, conv_spec])
@pytest.mark.parametrize("where", ["other subnetwork", "free position"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_nonfinite_weight_elsewhere_leaves_a_task_untouched(spec, where, value):
    torch.manual_seed(0)
    net = MultitaskNetwork(spec())
    a, b = net.task_names[0], net.task_names[1]
    data = {t: random_data(net, t, seed=i) for i, t in enumerate(net.task_names)}
    fit_stage(net, {a: data[a], b: data[b]}, FAST)
    before = predict(net, a, data[a].x)
    model_before = TaskModel.from_network(net, a)(data[a].x)
    key, layer = next((k, m) for k, m in net.multitask_layers() if a in m.subnetworks and b in m.subnetworks)
    target = layer.subnetwork_id(b) if where == "other subnetwork" else FREE
    positions = (layer.owner == target).nonzero()
    assert len(positions), f"{key} has no {where}"
    with torch.no_grad():
        layer.weight[tuple(positions[0])] = value
    after = predict(net, a, data[a].x)
    assert torch.isfinite(after).all() and torch.equal(after, before)
    torch.testing.assert_close(TaskModel.from_network(net, a)(data[a].x), model_before)


def test_an_overflowing_gradient_in_a_column_the_stage_does_not_own_leaves_frozen_weights_alone():
    """A gradient that overflows to inf at frozen positions (here made directly) must reach the
    optimizer as exactly zero there: inf * 0 would be NaN and Adam would write it into the frozen task."""
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec(n_tasks=2))
    fit_stage(net, {"t0": random_data(net, "t0")}, FAST)
    select_subnetworks(net, ["t1"], method="random")
    layer = net.trunk[0]
    frozen = layer.mask("t0")
    frozen_before = layer.weight.detach()[frozen].clone()
    masks = trainable_masks(net, ["t1"], ["t1"])
    optimizer = torch.optim.Adam([layer.weight], lr=0.1)
    guard = IsolationGuard(masks, optimizer)
    assert not guard.restore  # the fast path, which relies on exact zeros
    scale = torch.ones_like(layer.weight)
    scale[frozen] = float("inf")
    with guard:
        (layer.weight * scale).sum().backward()
        assert torch.equal(layer.weight.grad[frozen], torch.zeros_like(frozen_before))
        optimizer.step()
    assert torch.equal(layer.weight.detach()[frozen], frozen_before)
