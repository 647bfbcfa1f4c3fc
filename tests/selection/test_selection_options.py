"""Selection options beside the paper's procedure: row- and input-balanced allocation, per-unit rescaling,
re-initialisation."""

import math

import pytest
import torch

from rsn2.errors import CapacityError, SpecError
from rsn2.network import MultitaskNetwork, NetworkSpec, TaskSpec, conv2d, flatten, linear, relu
from rsn2.selection import compute_input_balanced_mask, compute_row_balanced_mask, select_subnetworks
from rsn2.training.early_stopping import EarlyStopping
from tests.helpers import mlp_spec, random_data


def _samples(net):
    return {t: (random_data(net, t, seed=i).x, random_data(net, t, seed=i).y) for i, t in enumerate(net.task_names)}


def test_row_balanced_mask_gives_every_row_its_share_of_its_best_candidates():
    scores = torch.tensor([[5.0, 1.0, 9.0, 2.0], [0.0, 0.0, 3.0, 4.0], [7.0, 6.0, 8.0, 1.0]])
    free = torch.tensor([[True, True, False, True], [True, True, True, True], [True, True, True, True]])
    mask = compute_row_balanced_mask(scores, free, 5)  # 5 = 3 rows x 1 + 2 extra, to the rows with most free
    assert mask.sum(dim=1).tolist() == [1, 2, 2]
    assert mask[0].tolist() == [True, False, False, False]  # 9.0 is not free
    assert mask[1].tolist() == [False, False, True, True]
    assert mask[2].tolist() == [True, False, True, False]


def test_input_balanced_mask_gives_every_input_its_share_of_its_best_candidates():
    scores = torch.tensor([[5.0, 1.0, 9.0], [0.0, 3.0, 4.0], [7.0, 6.0, 8.0], [2.0, 2.0, 1.0]])
    free = torch.ones(4, 3, dtype=torch.bool)
    free[2, 2] = False
    mask = compute_input_balanced_mask(scores, free, 7)  # 3 inputs x 2, one extra to the input with most free
    assert mask.sum(dim=0).tolist() == [3, 2, 2]
    assert mask[:, 0].tolist() == [True, False, True, True]  # 7, 5, 2 of input 0
    assert mask[:, 2].tolist() == [True, True, False, False]  # 8.0 is not free
    conv_scores = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    conv = compute_input_balanced_mask(conv_scores, torch.ones(2, 3, 2, 2, dtype=torch.bool), 12)
    assert conv.sum(dim=0).flatten().tolist() == [1] * 12 and bool(conv[1].all())  # the higher filter at every tap


def test_input_balanced_subnetworks_share_every_input_and_later_tasks_are_not_left_the_dark_ones():
    """Ten tasks whose inputs are lit only on the first 4 of 16 features: with global top-|gradient|
    the first tasks take the lit inputs' positions; input-balanced gives each task its share of each."""
    tasks = [TaskSpec(f"t{i}", "classification", (16,), head=[linear(32, 2)], keep_fraction=0.1) for i in range(10)]
    x = torch.zeros(64, 16)
    x[:, :4] = torch.rand(64, 4, generator=torch.Generator().manual_seed(0))  # not the global generator:
    y = (x[:, 0] > x[:, 1]).long()  # its state depends on which tests ran before in this process
    lit_share = {}
    for allocation in ("global", "input_balanced"):
        torch.manual_seed(0)
        net = MultitaskNetwork(NetworkSpec((linear(16, 32), relu()), tasks))
        for t in net.task_names:
            select_subnetworks(net, [t], {t: (x, y)}, allocation=allocation)
            net.freeze([t])
        layer = net.trunk[0]
        lit_share[allocation] = [int(layer.mask(t)[:, :4].sum()) for t in net.task_names]
    # global: dark inputs score exactly 0, so the first tasks take the lit positions that have a gradient and the
    # later ones are left dark inputs and the lit positions of units whose gradient was 0 too (ties)
    assert lit_share["global"][0] == math.floor(0.1 * 512)
    assert max(lit_share["global"][3:]) < 4 * 3 <= min(lit_share["input_balanced"]), lit_share
    # input-balanced: each lit input's share of every task, 51 // 16 = 3 or one more


def test_five_row_balanced_subnetworks_fill_a_nine_input_conv_layer_with_no_starved_filter():
    tasks = [
        TaskSpec(f"f{i}", "classification", (1, 8, 8), head=[linear(8 * 36, 3)], keep_fraction=0.2) for i in range(5)
    ]
    torch.manual_seed(0)
    net = MultitaskNetwork(NetworkSpec((conv2d(1, 8, 3), relu(), flatten()), tasks))
    select_subnetworks(net, net.task_names, _samples(net), allocation="row_balanced", rescale=False)
    layer = net.trunk[0]
    for t in net.task_names:
        per_filter = layer.mask(t).reshape(8, -1).sum(dim=1)
        assert int(per_filter.min()) >= 1 and int(per_filter.max() - per_filter.min()) <= 1, t
        assert int(per_filter.sum()) == math.floor(0.2 * 72)
    assert layer.free_capacity == 72 - 5 * 14


def test_row_balanced_picks_the_largest_gradients_within_each_row():
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec(n_tasks=1, keep=0.25))
    samples = _samples(net)

    class Recorded:
        name = "recorded"

        def __call__(self, network, tasks, samples_, slots):
            self.scores = {s: torch.rand(dict(network.multitask_layers())[s[0]].weight.shape) for s in slots}
            return self.scores

    importance = Recorded()
    select_subnetworks(net, ["t0"], samples, method=importance, allocation="row_balanced")
    for (key, name), score in importance.scores.items():
        mask = dict(net.multitask_layers())[key].mask(name)
        k = int(mask[0].sum())
        assert torch.equal(mask, score >= score.topk(k, dim=1).values[:, -1:])


def test_row_balanced_after_a_global_selection_that_emptied_rows_names_the_row():
    torch.manual_seed(0)
    spec = NetworkSpec(
        (linear(4, 4), relu()),
        tuple(TaskSpec(t, "classification", (4,), head=[linear(4, 2)], keep_fraction=0.5) for t in ("a", "b")),
    )
    net = MultitaskNetwork(spec)

    class FirstRows:
        name = "first-rows"

        def __call__(self, network, tasks, samples_, slots):
            score = torch.zeros(4, 4)
            score[:2] = 1.0  # rows 0 and 1 whole: 8 positions = 50%
            return dict.fromkeys(slots, score)

    select_subnetworks(net, ["a"], method=FirstRows())
    before = net.trunk[0].owner.clone()
    with pytest.raises(CapacityError, match=r"layer 'trunk\.0'.*row 0 has 0 free positions but its share is 2"):
        select_subnetworks(net, ["b"], method="random", allocation="row_balanced")
    assert torch.equal(net.trunk[0].owner, before) and not net.is_selected("b")


def test_unit_rescale_scales_each_row_by_its_own_kept_fan_in():
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec(n_tasks=1, keep=0.3))
    initial = {k: layer.weight.detach().clone() for k, layer in net.multitask_layers()}
    select_subnetworks(net, ["t0"], _samples(net), rescale="unit", reinit=False)
    for key, layer in net.multitask_layers():
        if "t0" not in layer.subnetworks or layer.owned_count("t0") == layer.total_positions:
            continue
        mask = layer.mask("t0")
        kept = mask.sum(dim=1, keepdim=True).clamp(min=1)
        factor = torch.sqrt(mask.shape[1] / kept).expand_as(mask)
        torch.testing.assert_close(layer.weight.detach()[mask], initial[key][mask] * factor[mask])
        assert torch.equal(layer.weight.detach()[~mask], initial[key][~mask])


def test_reinit_draws_kept_weights_anew_reproducibly_and_leaves_free_ones():
    def selected(seed):
        torch.manual_seed(0)
        net = MultitaskNetwork(mlp_spec(n_tasks=1, keep=0.3, width=32))
        initial = net.trunk[2].weight.detach().clone()
        select_subnetworks(net, ["t0"], _samples(net), reinit=True, rescale=False, seed=seed)
        return net.trunk[2], initial

    layer, initial = selected(1)
    mask = layer.mask("t0")
    bound = math.sqrt(6 / 64)
    assert not torch.equal(layer.weight.detach()[mask], initial[mask])
    assert float(layer.weight.detach()[mask].abs().max()) <= bound
    assert torch.equal(layer.weight.detach()[~mask], initial[~mask])
    assert torch.equal(selected(1)[0].weight, layer.weight)
    assert not torch.equal(selected(2)[0].weight.detach()[mask], layer.weight.detach()[mask])


def test_unknown_options_are_refused_before_anything_changes():
    net = MultitaskNetwork(mlp_spec(n_tasks=1))
    with pytest.raises(SpecError, match=r"allocation must be one of \('global', 'row_balanced', 'input_balanced'\)"):
        select_subnetworks(net, ["t0"], _samples(net), allocation="balanced")
    with pytest.raises(SpecError, match="rescale must be true, false or one of"):
        select_subnetworks(net, ["t0"], _samples(net), rescale="row")
    assert not net.is_selected("t0")


def test_relative_early_stopping_scales_the_bar_with_the_loss():
    absolute, relative = EarlyStopping(2, 0.01, "abs"), EarlyStopping(2, 0.01, "rel")
    for stopper in (absolute, relative):
        assert stopper.update(0, 0.2)
    assert not absolute.update(1, 0.195)  # 0.005 better: under the absolute bar of 0.01
    assert relative.update(1, 0.195)  # 2.5% better: over the relative bar of 1%
    with pytest.raises(SpecError, match="min_delta_mode must be one of"):
        EarlyStopping(2, 0.01, "percent")


def test_reinit_leaves_whole_layer_subnetworks_alone():
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec(n_tasks=1, keep=0.3))
    before = {k: layer.weight.detach().clone() for k, layer in net.multitask_layers()}
    select_subnetworks(net, ["t0"], _samples(net), reinit=True)
    for key, layer in net.multitask_layers():
        whole = layer.owned_count("t0") == layer.total_positions  # the head: nothing was ranked there
        assert torch.equal(layer.weight.detach(), before[key]) == whole, key
