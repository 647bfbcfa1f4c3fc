"""Consecutive packed linear layers in one compiled call: the same outputs as layer by layer."""

import copy

import pytest
import torch

from rsn2.inference import SparsePolicy, TaskModel, kernels, sparse_policy, task_models
from rsn2.inference.sparse_chain import SparseChain
from rsn2.network import MultitaskNetwork
from rsn2.selection import select_subnetworks
from tests.helpers import mlp_spec, random_data


def _network():
    """Three 100-wide linear layers (10,000 positions each) with 10% subnetworks: packed by the policy."""
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec(width=100, keep=0.1, in_features=80))
    data = {t: random_data(net, t, seed=i) for i, t in enumerate(net.task_names)}
    select_subnetworks(net, net.task_names, {t: (d.x[:16], d.y[:16]) for t, d in data.items()})
    return net.eval(), data


def _chain(model):
    (chain,) = [m for m in model.steps if isinstance(m, SparseChain)]
    return chain


def _spy(monkeypatch):
    calls = []
    original = kernels.rows_chain

    def spy(*args):
        calls.append(args[-2].shape[0])
        return original(*args)

    monkeypatch.setattr(kernels, "rows_chain", spy)
    return calls


@pytest.mark.parametrize("batch", [1, 2, 4, 5, 64])
def test_a_chain_computes_what_its_layers_compute_one_by_one(batch, monkeypatch):
    net, data = _network()
    calls = _spy(monkeypatch)
    for t, d in data.items():
        model = TaskModel.from_network(net, t)
        chain = _chain(model)
        assert len(chain.layers) == 6  # the trunk's three kernels and their ReLUs; the head stays apart
        x = d.x[:batch]
        with torch.no_grad():
            layer_by_layer = chain.layers(x)
            expected = net(x, t)
        assert torch.equal(chain(x), layer_by_layer)  # the same sums in the same order
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    fused = SparsePolicy().rows_kernel_max_batch
    assert calls == ([batch] * 2 * len(data) if batch <= fused else [])  # fused only for a few samples


def test_only_linear_packed_kernels_join_and_runs_need_two():
    net, _ = _network()
    with sparse_policy(enabled=False):  # nothing packed: no chain
        assert not any(isinstance(m, SparseChain) for m in TaskModel.from_network(net, "t0").steps)
    model = TaskModel.from_network(net, "t0")
    kinds = [type(m).__name__ for m in model.steps]
    assert kinds == ["SparseChain", "SubnetworkKernel"]  # the 100% head is dense: outside the chain
    assert model.nbytes == sum(k.nbytes for k in model.kernels())
    head = model.steps[1]
    with pytest.raises(ValueError, match="only packed linear SubnetworkKernels"):
        SparseChain([*_chain(model).layers, head])  # a kernel holding no packed form cannot join


def test_copies_of_a_task_model_rebuild_the_compiled_plan():
    net, data = _network()
    model = TaskModel.from_network(net, "t0")
    x = data["t0"].x[:1]
    first = model(x)
    twin = copy.deepcopy(model)
    assert _chain(twin)._plan is None
    assert torch.equal(twin(x), first)


def test_served_models_chain_too():
    net, data = _network()
    models = task_models(net)
    x = data["t1"].x[:3]
    with torch.no_grad():
        torch.testing.assert_close(models["t1"](x), net(x, "t1"), rtol=1e-5, atol=1e-5)
    assert any(isinstance(m, SparseChain) for m in models["t1"].steps)
