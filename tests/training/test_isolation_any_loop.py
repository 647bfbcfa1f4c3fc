"""Isolation is a property of the model: a frozen task's outputs cannot change whatever loop trains the
network (issue: a plain user loop with AdamW over all parameters, overflowing gradients, NaN weights)."""

import pytest
import torch
import torch.nn.functional as F

from rsn2.io import load_model, save_model
from rsn2.network import MultitaskNetwork
from rsn2.network.task_kinds import task_kind
from rsn2.selection import select_subnetworks
from rsn2.training import TrainConfig, fit_stage
from tests.helpers import conv_spec, mlp_spec, random_data

FAST = TrainConfig(batch_size=16, max_epochs=1, patience=5, progress=False)


def _frozen_t0_then_selected_t1(spec=None):
    """t0 trained and frozen; t1 selected (not trained): what a user then trains by hand."""
    torch.manual_seed(0)
    net = MultitaskNetwork(spec or mlp_spec())
    first, second = net.task_names
    fit_stage(net, {first: random_data(net, first)}, FAST)
    data = random_data(net, second, seed=1)
    select_subnetworks(net, [second], {second: (data.x[:32], data.y[:32])})
    return net, first, second, data


def _outputs(net, task, seed=5):
    net.eval()
    with torch.no_grad():
        return net(random_data(net, task, seed=seed).x, task)


def _user_loop(net, task, data, optimizer, steps=5, scale=1.0):
    net.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(net(data.x, task), data.y) * scale
        loss.backward()
        optimizer.step()


def test_plain_adamw_loop_over_all_parameters_leaves_a_frozen_task_bit_identical(tmp_path):
    net, frozen, new, data = _frozen_t0_then_selected_t1()
    before = _outputs(net, frozen)
    moved = _outputs(net, new)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.5)  # decays every tensor it holds
    _user_loop(net, new, data, optimizer)
    assert torch.equal(_outputs(net, frozen), before)
    assert not torch.equal(_outputs(net, new), moved)  # the loop did train the new task
    # what is saved and loaded is what the frozen task computes
    path = tmp_path / "m.safetensors"
    save_model(net, path)
    assert torch.equal(_outputs(load_model(path), frozen), before)
    fresh = MultitaskNetwork(mlp_spec())
    select_subnetworks(fresh, fresh.task_names, {t: (data.x[:8], data.y[:8] % 3) for t in fresh.task_names})
    fresh.load_state_dict(net.state_dict())
    assert torch.equal(_outputs(fresh, frozen), before)


def test_overflowing_gradients_in_a_user_loop_cannot_reach_a_frozen_task():
    net, frozen, new, data = _frozen_t0_then_selected_t1()
    before = _outputs(net, frozen)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    _user_loop(net, new, data, optimizer, steps=2, scale=1e38)  # gradients overflow to inf, inf * 0 is NaN
    raw = net.trunk[0].weight
    assert not torch.isfinite(raw).all()  # the raw kernel did take NaN/inf, frozen positions included
    assert torch.equal(_outputs(net, frozen), before)


def test_nan_weights_of_another_subnetwork_do_not_reach_a_frozen_task():
    net, frozen, new, _ = _frozen_t0_then_selected_t1(conv_spec())
    before = _outputs(net, frozen)
    with torch.no_grad():
        for _, layer in net.multitask_layers():
            if new in layer.subnetworks:
                layer.weight[layer.mask(new)] = float("nan")
    assert torch.equal(_outputs(net, frozen), before)


def test_a_loaded_model_is_protected_too(tmp_path):
    net, frozen, new, data = _frozen_t0_then_selected_t1()
    path = tmp_path / "m.safetensors"
    save_model(net, path)
    loaded = load_model(path)
    before = _outputs(loaded, frozen)
    assert frozen in loaded.heads[frozen][0].frozen and not loaded.heads[frozen][0].biases[frozen].requires_grad
    optimizer = torch.optim.AdamW(loaded.parameters(), lr=1e-2, weight_decay=0.5)
    _user_loop(loaded, new, data, optimizer)
    assert torch.equal(_outputs(loaded, frozen), before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
def test_a_bf16_user_loop_on_cuda_leaves_a_frozen_task_bit_identical():
    net, frozen, new, data = _frozen_t0_then_selected_t1(conv_spec())
    net.cuda()
    data = data.to(torch.device("cuda"))
    probe = random_data(net, frozen, seed=5).x.cuda()
    net.eval()
    with torch.no_grad():
        before = net(probe, frozen)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.5)
    net.train()
    for _ in range(5):
        optimizer.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = net(data.x, new)
        task_kind(net.task_spec(new).kind).loss(out.float(), data.y).backward()  # MSE: t1 is a regression
        optimizer.step()
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(probe, frozen), before)
