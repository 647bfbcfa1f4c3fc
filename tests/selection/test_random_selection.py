"""The "random" selection ablation: scores independent of the weights, whatever the caller seeded (#20)."""

import math

import pytest
import torch

from rsn2.network import MultitaskNetwork, NetworkSpec, TaskSpec, linear, relu
from rsn2.selection import select_subnetworks


def _ten_task_network(seed: int) -> MultitaskNetwork:
    """A 64-64 trunk and ten 10% tasks, built right after ``torch.manual_seed(seed)`` as a script would."""
    tasks = [TaskSpec(f"t{i}", "classification", (64,), head=[linear(64, 10)], keep_fraction=0.1) for i in range(10)]
    torch.manual_seed(seed)
    return MultitaskNetwork(NetworkSpec((linear(64, 64), relu()), tasks))


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_random_selection_keeps_weights_distributed_like_the_free_ones(seed):
    net = _ten_task_network(seed)
    layer = net.trunk[0]
    initial = layer.weight.detach().clone()
    bound = math.sqrt(6 / (64 + 64))  # Glorot-uniform: weights uniform in [-bound, bound]
    for t in net.task_names:  # one selection per task, as ten stages in sequence would call it
        select_subnetworks(net, [t], method="random", rescale=False, seed=seed)
    for t in net.task_names:
        kept = initial[layer.mask(t)]
        # 409 uniform draws: the mean's std is bound / sqrt(3 * 409) ~ 0.03 bound; the bug gave 0.9 bound for t0
        assert abs(float(kept.mean())) < 0.15 * bound, (t, float(kept.mean()) / bound)
        assert float(kept.abs().mean()) == pytest.approx(bound / 2, rel=0.15), t


def test_random_selection_is_reproducible_for_a_seed_and_differs_between_seeds():
    def masks(selection_seed: int) -> list[torch.Tensor]:
        net = _ten_task_network(0)
        select_subnetworks(net, ["t0", "t1"], method="random", seed=selection_seed)
        return [net.trunk[0].mask(t) for t in ("t0", "t1")]

    a, b, c = masks(3), masks(3), masks(4)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], a[1])  # two slots of one selection draw different scores
