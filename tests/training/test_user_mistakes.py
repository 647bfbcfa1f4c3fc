"""A new user's mistakes get an error that names the task and what is expected, before anything changes."""

import numpy as np
import pytest
import torch

from rsn2.errors import FrozenSubnetworkError, SpecError, TaskError
from rsn2.network import MultitaskNetwork
from rsn2.training import TaskData, TrainConfig, fit_stage
from tests.helpers import mlp_spec, random_data, snapshot

FAST = TrainConfig(batch_size=16, max_epochs=1, progress=False)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return MultitaskNetwork(mlp_spec(n_tasks=2))  # t0: 3 classes, t1: 4 classes, inputs (8,)


@pytest.mark.parametrize(
    "data,message",
    [
        (
            lambda: TaskData(torch.rand(20, 9), torch.zeros(20, dtype=torch.long)),
            r"task 't0': x must have shape \(N, 8\)",
        ),
        (
            lambda: TaskData(torch.rand(20), torch.zeros(20, dtype=torch.long)),
            r"x must have shape \(N, 8\), got \(20,\)",
        ),
        (lambda: TaskData(torch.ones(20, 8, dtype=torch.long), torch.zeros(20, dtype=torch.long)), "floating-point"),
        (lambda: TaskData(torch.rand(20, 8), torch.full((20,), 3)), r"class ids 3\.\.3; its head has 3 outputs"),
        (lambda: TaskData(torch.rand(20, 8), torch.full((20,), -1)), r"ids must be in 0\.\.2"),
        (lambda: TaskData(torch.rand(20, 8), torch.zeros(20)), "integer class ids"),
        (lambda: TaskData(torch.full((20, 8), float("nan")), torch.zeros(20, dtype=torch.long)), "NaN or infinite"),
    ],
)
def test_bad_data_is_refused_before_selection(net, data, message):
    before = snapshot(net)
    with pytest.raises(TaskError, match=message):
        fit_stage(net, {"t0": data()}, FAST)
    assert not net.is_selected("t0")
    after = snapshot(net)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_numpy_inputs_are_named_not_raw_torch_errors(net):
    with pytest.raises(SpecError, match=r"x must be a torch.Tensor, got ndarray \(torch.as_tensor\(x\)\)"):
        TaskData(np.zeros((4, 8)), torch.zeros(4, dtype=torch.long))
    fit_stage(net, {"t0": random_data(net, "t0")}, FAST)
    with pytest.raises(TaskError, match=r"input must be a torch\.Tensor, got ndarray"):
        net(np.zeros((2, 8)), "t0")
    with pytest.raises(TaskError, match=r"task 't0' takes input of shape \(N, 8\), got \(8,\)"):
        net(torch.zeros(8), "t0")


def test_a_frozen_task_in_a_new_stage_is_refused_before_the_new_task_is_selected(net):
    fit_stage(net, {"t0": random_data(net, "t0")}, FAST)
    with pytest.raises(FrozenSubnetworkError, match=r"\['t0'\] were trained in an earlier stage"):
        fit_stage(net, {"t0": random_data(net, "t0"), "t1": random_data(net, "t1")}, FAST)
    assert not net.is_selected("t1")


def test_state_dict_holds_tensors_only_and_round_trips(net):
    fit_stage(net, {"t0": random_data(net, "t0")}, FAST)
    copied = {k: v.clone() for k, v in net.state_dict().items()}  # the usual idiom
    fresh = MultitaskNetwork(mlp_spec(n_tasks=2))
    fresh.load_state_dict(copied)
    assert fresh.frozen == {"t0"} and fresh.trunk[0].subnetworks == ["t0"]
    x = torch.rand(5, 8)
    with torch.no_grad():
        assert torch.equal(fresh(x, "t0"), net(x, "t0"))
