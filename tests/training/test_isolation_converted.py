"""The isolation matrix on converted user models: batch norm (in train mode, with another task
training), layer and group norm, attention, residual adds, embeddings; rsn2's loop and plain user
loops with Adam, AdamW and SGD with weight decay; bf16 with channels_last."""

import pytest
import torch
import torch.nn.functional as F

import rsn2
from rsn2.selection import ownership_problems, select_subnetworks
from rsn2.training import TaskData, TrainConfig, fit_stage, train_stage
from tests.user_models import MODELS, inputs_for, tasks_for

FAST = TrainConfig(batch_size=16, max_epochs=2, patience=5, progress=False, precision="fp32")


def _a_frozen_b_selected(model: str):
    """Task a trained and frozen; task b added and selected: what a later stage trains."""
    torch.manual_seed(0)
    net = rsn2.multitask(MODELS[model][0](), tasks_for(model, ("a",)))
    fit_stage(net, {"a": TaskData(*inputs_for(model, seed=1))}, FAST)
    net.add_tasks(tasks_for(model, ("b",)))
    x, y = inputs_for(model, seed=2)
    select_subnetworks(net, ["b"], {"b": (x, y)})
    return net, TaskData(x, y)


def _state_of(net, task):
    """Every tensor task ``task`` reads: its outputs on fixed inputs, its copies' parameters and statistics."""
    net.eval()
    x, _ = inputs_for(next(m for m in MODELS if MODELS[m][1] == net.task_spec(task).input_shape), seed=9)
    with torch.no_grad():
        out = {"outputs": net(x, task).clone()}
    for key, layer in net.per_subnetwork_layers():
        for name, value in layer.copies[task].state_dict().items():
            out[f"{key}.{name}"] = value.clone()
    return out


def _assert_same(before, after):
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"changed: {changed}"


def _user_loop(net, data, optimizer, steps=4):
    net.train()
    for i in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(net(data.x, "b"), data.y).backward()
        optimizer.step()
        with torch.no_grad():  # running the frozen task in train mode moves nothing of it
            net(data.x[: 4 + i], "a")


OPTIMIZERS = {
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.5),
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.1),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.1),
}


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_a_plain_user_loop_over_all_parameters_leaves_a_frozen_task_bit_identical(model, optimizer):
    net, data = _a_frozen_b_selected(model)
    before, b_before = _state_of(net, "a"), _state_of(net, "b")
    _user_loop(net, data, OPTIMIZERS[optimizer](net.parameters()))
    _assert_same(before, _state_of(net, "a"))
    assert not torch.equal(b_before["outputs"], _state_of(net, "b")["outputs"])  # b did train
    assert ownership_problems(net) == []


@pytest.mark.parametrize("model", sorted(MODELS))
def test_rsn2s_loop_leaves_a_frozen_task_bit_identical(model):
    net, data = _a_frozen_b_selected(model)
    before = _state_of(net, "a")
    train_stage(net, {"b": data}, FAST)
    _assert_same(before, _state_of(net, "a"))
    assert net.frozen == {"a", "b"}


def test_batch_norm_in_train_mode_moves_only_the_running_tasks_statistics():
    """Two tasks training in one stage: a forward of one in train mode never moves the other's."""
    torch.manual_seed(0)
    net = rsn2.multitask(MODELS["resnet"][0](), tasks_for("resnet"))
    x, y = inputs_for("resnet")
    select_subnetworks(net, ["a", "b"], {"a": (x, y), "b": (x, y)})
    bn = net.body.bn
    net.train()
    a_before, b_before = bn.copies["a"].running_mean.clone(), bn.copies["b"].running_mean.clone()
    with net.task("b"):
        net(x * 3 + 1)
    assert torch.equal(bn.copies["a"].running_mean, a_before)
    assert not torch.equal(bn.copies["b"].running_mean, b_before)
    assert int(bn.copies["a"].num_batches_tracked) == 0 and int(bn.copies["b"].num_batches_tracked) == 1


def test_a_frozen_tasks_batch_norm_runs_on_its_statistics_even_in_train_mode():
    net, data = _a_frozen_b_selected("resnet")
    net.eval()
    with torch.no_grad():
        eval_out = net(data.x, "a")
    net.train()
    with torch.no_grad():
        assert torch.equal(net(data.x, "a"), eval_out)
    assert not any(p.requires_grad for p in net.body.bn.copies["a"].parameters())
    assert list(net.body.bn.copies["a"].parameters()) == []  # its values are buffers now


def test_bf16_with_channels_last_trains_through_the_conversion_and_isolates():
    net, data = _a_frozen_b_selected("resnet")
    before = _state_of(net, "a")
    b_before = _state_of(net, "b")["outputs"]
    config = TrainConfig(batch_size=16, max_epochs=1, progress=False, precision="bf16", memory_format="channels_last")
    result = train_stage(net, {"b": data}, config)
    assert result.precision == "bf16" and result.channels_last
    _assert_same(before, _state_of(net, "a"))
    assert not torch.equal(_state_of(net, "b")["outputs"], b_before)
