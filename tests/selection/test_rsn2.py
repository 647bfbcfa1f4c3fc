import math

import pytest
import torch

from rsn2.errors import CapacityError, FrozenSubnetworkError, SpecError, TaskError
from rsn2.network import MultitaskNetwork, NetworkSpec, SharedSubnetwork, TaskSpec, linear, relu
from rsn2.network.task_kinds import task_kind
from rsn2.selection import compute_mask, requested_positions, select_subnetworks
from tests.helpers import mlp_spec, random_data, snapshot


def test_compute_mask_takes_top_scores_among_candidates_with_stable_ties():
    scores = torch.tensor([5.0, 1.0, 9.0, 1.0, 1.0, 0.0])
    candidates = torch.tensor([True, True, False, True, True, True])
    mask = compute_mask(scores, candidates, 3)
    # 9.0 is not a candidate; 5.0 first, then the ties at 1.0 broken by lowest index (1, 3)
    assert mask.tolist() == [True, True, False, True, False, False]
    assert compute_mask(torch.zeros(6), candidates, 2).tolist() == [True, True, False, False, False, False]


def test_gradient_selection_keeps_largest_gradients_of_the_dense_candidate_network():
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec(n_tasks=1, keep=0.25))
    data = random_data(net, "t0", n=32)
    layer = net.trunk[2]
    # reference: gradient of the loss with the task reading every (free) position
    x = data.x
    for step in net.path("t0"):
        m = step.module
        x = m._apply_kernel(x, m.weight * m.free_mask, None) if step.subnetwork else m(x)
    grad = torch.autograd.grad(task_kind("classification").loss(x, data.y), layer.weight)[0].abs()
    weight_before = layer.weight.detach().clone()
    select_subnetworks(net, ["t0"], {"t0": (data.x, data.y)}, rescale=False, reinit=False)
    count = requested_positions(0.25, layer.total_positions)
    expected = compute_mask(grad, torch.ones_like(grad, dtype=torch.bool), count)
    assert torch.equal(layer.mask("t0"), expected)
    assert torch.equal(layer.weight.detach(), weight_before)


def test_second_task_selects_only_free_positions_and_rescales():
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec(n_tasks=2, keep=0.3))
    samples = {t: (random_data(net, t).x, random_data(net, t).y) for t in net.task_names}
    w0 = {k: layer.weight.detach().clone() for k, layer in net.multitask_layers()}
    report = select_subnetworks(net, ["t0", "t1"], samples, rescale=True, reinit=False)
    for key, layer in net.multitask_layers():
        if not key.startswith("trunk"):
            continue
        a, b = layer.mask("t0"), layer.mask("t1")
        assert not bool((a & b).any())
        assert int(a.sum()) == requested_positions(0.3, layer.total_positions) == report.kept[(key, "t0")]
        scale = 1 / math.sqrt(int(a.sum()) / layer.total_positions)
        torch.testing.assert_close(layer.weight.detach()[a], w0[key][a] * scale)
        assert torch.equal(layer.weight.detach()[layer.free_mask], w0[key][layer.free_mask])


def test_a_task_that_can_never_fit_is_refused_when_added_and_nothing_changes():
    with pytest.raises(CapacityError, match=r"layer 'trunk.0' .* can never hold .* only 128 are free"):
        MultitaskNetwork(mlp_spec(n_tasks=2, keep=0.6))
    net = MultitaskNetwork(mlp_spec(n_tasks=1, keep=0.6))
    select_subnetworks(net, ["t0"], method="random")
    before = snapshot(net)
    extra = mlp_spec(n_tasks=2, keep=0.6).tasks[1]
    with pytest.raises(CapacityError) as err:
        net.add_tasks([extra])
    msg = str(err.value)
    assert "trunk.0" in msg and "t1: 76" in msg and "only 52 are free" in msg
    assert net.task_names == ["t0"] and "t1" not in net.heads
    after = snapshot(net)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_failure_during_selection_rolls_back(monkeypatch):
    net = MultitaskNetwork(mlp_spec(n_tasks=1))
    before = snapshot(net)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("rsn2.selection.select.compute_mask", broken)
    with pytest.raises(RuntimeError, match="boom"):
        select_subnetworks(net, ["t0"], method="random")
    after = snapshot(net)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(layer.subnetworks == [] for _, layer in net.multitask_layers())


@pytest.mark.parametrize("method", ["magnitude", "random"])
def test_ablation_methods_need_no_data(method):
    net = MultitaskNetwork(mlp_spec(n_tasks=2, keep=0.2))
    select_subnetworks(net, ["t0", "t1"], method=method, rescale=False, reinit=False)
    layer = net.trunk[2]
    if method == "magnitude":
        mags = layer.weight.detach().abs()
        assert float(mags[layer.mask("t0")].min()) >= float(mags[layer.mask("t1")].max())
    assert layer.owned_count("t0") == layer.owned_count("t1") == requested_positions(0.2, 256)


def test_selection_is_deterministic():
    masks = []
    for _ in range(2):
        torch.manual_seed(3)
        net = MultitaskNetwork(mlp_spec(n_tasks=2))
        samples = {t: (random_data(net, t).x, random_data(net, t).y) for t in net.task_names}
        select_subnetworks(net, ["t0", "t1"], samples)
        masks.append(net.trunk[2].owner.clone())
    assert torch.equal(*masks)


def test_errors_for_missing_samples_unknown_and_reselected_tasks():
    net = MultitaskNetwork(mlp_spec(n_tasks=1))
    with pytest.raises(TaskError, match="sample batch"):
        select_subnetworks(net, ["t0"])
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        select_subnetworks(net, ["nope"], method="random")
    select_subnetworks(net, ["t0"], method="random")
    with pytest.raises(FrozenSubnetworkError, match="already"):
        select_subnetworks(net, ["t0"], method="random")
    with pytest.raises(SpecError, match=r"method must be one of \(.gradient., .magnitude., .random.\)"):
        select_subnetworks(net, ["t0"], method="psychic")


def test_shared_subnetwork_is_one_subnetwork_in_shared_layers_and_separate_elsewhere():
    trunk = (linear(6, 12), relu(), linear(12, 12), relu(), linear(12, 12), relu())
    tasks = tuple(
        TaskSpec(n, "classification", (6,), head=[linear(12, k)], keep_fraction=0.25)
        for n, k in (("age", 10), ("gender", 2), ("race", 5), ("cifar", 10))
    )
    spec = NetworkSpec(trunk, tasks, (SharedSubnetwork("utk", ("age", "gender", "race"), (0, 2), 0.25),))
    net = MultitaskNetwork(spec)
    samples = {t: (random_data(net, t).x, random_data(net, t).y) for t in net.task_names}
    select_subnetworks(net, net.task_names, samples)
    assert net.trunk[0].subnetworks == ["utk", "cifar"]
    assert net.trunk[2].subnetworks == ["utk", "cifar"]
    assert net.trunk[4].subnetworks == ["age", "gender", "race", "cifar"]
    first = net.trunk[0]
    assert first.ownership()["free"] == first.total_positions - 2 * requested_positions(0.25, first.total_positions)
    assert net.trunk[4].ownership()["free"] == 0
    assert net.tasks_of("utk") == ["age", "gender", "race"]


def test_fractions_summing_to_one_always_fit():
    assert requested_positions(0.2, 288) == 57 and requested_positions(0.1, 1000) == 100
    assert requested_positions(0.7, 10) == 7  # 0.7 * 10 is 6.999... in floating point
    spec = NetworkSpec(
        [linear(9, 32), relu()],
        [TaskSpec(f"f{i}", "classification", (9,), head=[linear(32, 2)], keep_fraction=0.2) for i in range(5)],
    )
    net = MultitaskNetwork(spec)
    select_subnetworks(net, net.task_names, method="random")  # 288 positions: 5 x 57 fit, 5 x 58 would not
    assert net.trunk[0].ownership()["free"] == 288 - 5 * 57
