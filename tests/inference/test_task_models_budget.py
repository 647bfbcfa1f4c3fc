"""Every task's TaskModel under one byte budget for dense copies (what ``rsn2 serve`` holds)."""

import pytest
import torch

from rsn2.errors import SpecError
from rsn2.inference import TaskModel, task_models
from rsn2.network import MultitaskNetwork
from rsn2.selection import select_subnetworks
from tests.helpers import conv_spec, random_data
from tests.inference.test_task_model import _spy


def _selected_conv_network():
    torch.manual_seed(0)
    net = MultitaskNetwork(conv_spec(keep=0.3))
    data = {t: random_data(net, t, seed=i) for i, t in enumerate(net.task_names)}
    select_subnetworks(net, net.task_names, {t: (d.x[:16], d.y[:16]) for t, d in data.items()})
    return net.eval(), data


def _kernels(models):
    return [k for m in models.values() for k in m.kernels()]


def test_no_budget_is_each_task_model_as_the_policy_makes_it():
    net, _ = _selected_conv_network()
    models = task_models(net, dense_budget=None)
    assert set(models) == set(net.task_names)
    for t, model in models.items():
        assert model.nbytes == TaskModel.from_network(net, t).nbytes
    assert any(k.dense_bytes for k in _kernels(models))  # the policy keeps these small layers dense


def test_a_zero_budget_keeps_no_dense_copy_and_still_computes_the_network(monkeypatch):
    net, data = _selected_conv_network()
    models = task_models(net, dense_budget=0)
    for k in _kernels(models):
        assert k.dense_bytes == 0 if k.can_pack else k.density > 0.5
    calls = _spy(monkeypatch)
    for t, d in data.items():
        with torch.no_grad():
            expected = net(d.x, t)
        for batch in (1, len(d.x)):  # convolutions run sparse beyond the policy's one sample too
            torch.testing.assert_close(models[t](d.x[:batch]), expected[:batch], rtol=1e-5, atol=1e-5)
    assert any(shape[0] == len(data[net.task_names[0]].x) and len(shape) == 4 for shape in calls)


def test_a_budget_keeps_the_smallest_copies_that_fit():
    net, _ = _selected_conv_network()
    unbounded = sum(k.dense_bytes for k in _kernels(task_models(net, dense_budget=None)))
    one_dense = max(sum(4 * s.module.owner.numel() for s in net.path(t) if s.subnetwork) for t in net.task_names)
    models = task_models(net, dense_budget=0.5)
    kept = [k.dense_bytes for k in _kernels(models) if k.dense_bytes and k.can_pack]
    dropped = [k.shape for k in _kernels(models) if k.packed_only]
    assert sum(kept) <= 0.5 * one_dense < unbounded and kept and dropped
    largest_kept = max(kept)
    assert all(4 * torch.Size(shape).numel() >= largest_kept for shape in dropped)


def test_a_negative_budget_is_refused():
    net, _ = _selected_conv_network()
    with pytest.raises(SpecError, match="dense_budget must be >= 0"):
        task_models(net, dense_budget=-1)
