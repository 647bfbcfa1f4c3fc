"""Task inference without a task name: the entropy rule, SupSup's one-shot rule over a superposition,
confidence and refusal; exact on separable tasks, unreliable (and said so) on identical ones."""

import math

import pytest
import torch

import rsn2
from rsn2.errors import TaskError
from rsn2.network import MultitaskNetwork, NetworkSpec, TaskSpec, linear, relu
from rsn2.network.task_inference import DEFAULT_THRESHOLD, choose, entropy_guess, normalized_entropy
from rsn2.selection import select_subnetworks
from rsn2.training import TaskData, TrainConfig, fit_stage
from tests.helpers import snapshot
from tests.user_models import MODELS, inputs_for, tasks_for

FEATURES = 32


def test_normalized_entropy_is_zero_when_certain_and_one_when_uniform():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    h = normalized_entropy(logits)
    assert h[0].item() == pytest.approx(1.0) and h[1].item() == pytest.approx(0.0, abs=1e-6)
    assert normalized_entropy(torch.zeros(3, 1)).tolist() == [0.0, 0.0, 0.0]  # one class: always certain
    two = normalized_entropy(torch.tensor([[math.log(3.0), 0.0]]))  # p = (3/4, 1/4)
    assert two.item() == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2))


def test_choose_takes_the_lowest_entropy_and_the_margin_to_the_runner_up_as_confidence():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.15, 0.5], [0.8, 0.7, 0.45]])
    index, confidence = choose(scores)
    assert index.tolist() == [1, 0, 2]
    assert confidence.tolist() == pytest.approx([0.6, 0.05, 0.05])
    index, confidence = choose(torch.tensor([[0.3, 0.9]]))  # one candidate: always sure
    assert index.tolist() == [0, 0] and confidence.tolist() == [1.0, 1.0]
    index, confidence = choose(torch.tensor([[4.0], [1.0], [-2.0]]), higher_is_better=True)
    assert index.tolist() == [0] and confidence.tolist() == pytest.approx([0.75])


def test_entropy_guess_per_sample_and_per_batch_and_unknown_below_the_threshold():
    sure = torch.tensor([[9.0, 0.0, 0.0]])
    unsure = torch.tensor([[0.1, 0.0, 0.0]])
    outputs = {"a": torch.cat([sure, unsure, unsure]), "b": torch.cat([unsure, sure, unsure])}
    guess = entropy_guess(outputs)
    assert guess.candidates == ("a", "b") and guess.method == "entropy" and guess.per == "sample"
    assert guess.index[:2].tolist() == [0, 1] and guess.scores.shape == (2, 3)
    assert guess.tasks(threshold=DEFAULT_THRESHOLD) == ["a", "b", None]  # the third: neither task knows it
    batch = entropy_guess({"a": outputs["a"][:1].repeat(4, 1), "b": outputs["b"][:1].repeat(4, 1)}, per="batch")
    assert batch.tasks() == ["a"] and batch.index.shape == (1,)
    with pytest.raises(TaskError, match="same samples"):
        entropy_guess({"a": sure, "b": torch.cat([sure, sure])})
    with pytest.raises(TaskError, match=r"in \[0, 1\]"):
        guess.tasks(threshold=1.5)


def _permuted_tasks(n_tasks: int, n: int, seed: int):
    """Task k: 4 classes of smooth 1-D patterns plus noise, its features in its own random order
    (Permuted-MNIST in miniature: to every other task's network the inputs look like noise)."""
    gen = torch.Generator().manual_seed(seed)
    grid = torch.linspace(0, 2 * math.pi, FEATURES)
    patterns = torch.stack([torch.sin((c + 1) * grid) for c in range(4)])
    orders = [torch.randperm(FEATURES, generator=torch.Generator().manual_seed(100 + k)) for k in range(n_tasks)]
    data = []
    for k in range(n_tasks):
        y = torch.randint(0, 4, (n,), generator=gen)
        x = patterns[y] + 0.3 * torch.randn(n, FEATURES, generator=gen)
        data.append((x[:, orders[k]], y))
    return data


def _mlp(names, keep=0.3):
    trunk = (linear(FEATURES, 64), relu(), linear(64, 64), relu())
    return MultitaskNetwork(
        NetworkSpec(
            trunk,
            tuple(TaskSpec(t, "classification", (FEATURES,), head=[linear(64, 4)], keep_fraction=keep) for t in names),
        )
    )


def _train(net, datasets):
    config = TrainConfig(max_epochs=10, batch_size=64, lr=3e-3, patience=10, progress=False)
    for name, (x, y) in datasets.items():
        fit_stage(net, {name: TaskData(x, y)}, config)
    return net.eval()


@pytest.fixture(scope="module")
def separable():
    torch.manual_seed(0)
    names = ["p0", "p1", "p2"]
    net = _train(_mlp(names), dict(zip(names, _permuted_tasks(3, 768, seed=0), strict=True)))
    return net, dict(zip(names, _permuted_tasks(3, 128, seed=1), strict=True))


def test_on_separable_tasks_inference_is_exact_per_batch_and_right_per_sample(separable):
    net, test = separable
    for k, (name, (x, _)) in enumerate(test.items()):
        for start in range(0, len(x), 16):
            assert net.infer_task(x[start : start + 16], per="batch").tasks(DEFAULT_THRESHOLD) == [name]
            assert net.infer_task(x[start : start + 16], method="one-shot", per="batch").tasks() == [name]
        per_sample = net.infer_task(x)
        assert (per_sample.index == k).float().mean() >= 0.95
        assert per_sample.confidence.mean() > 2 * DEFAULT_THRESHOLD


def test_on_identical_input_distributions_inference_is_refused_not_silently_wrong():
    """Two tasks on the same inputs (different labels): both are sure of every sample, so no answer
    clears the threshold; the few per-sample answers that do are a coin toss, and rare."""
    torch.manual_seed(0)
    (x, y), (xt, _) = _permuted_tasks(1, 512, seed=0)[0], _permuted_tasks(1, 256, seed=1)[0]
    net = _train(_mlp(["same", "other"]), {"same": (x, y), "other": (x, (y + 1) % 4)})
    assert net.infer_task(xt, per="batch").tasks(DEFAULT_THRESHOLD) == [None]
    answered = [t for t in net.infer_task(xt).tasks(DEFAULT_THRESHOLD) if t is not None]
    assert len(answered) <= 0.1 * len(xt)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_superposition_with_one_hot_coefficients_is_that_task(model):
    """Every layer kind (kernels, batch norm, attention, embedding) mixes its subnetworks exactly."""
    torch.manual_seed(0)
    net = rsn2.multitask(MODELS[model][0](), tasks_for(model, names=("a", "b", "c")))
    x, y = inputs_for(model)
    select_subnetworks(net, net.task_names, {t: (x, y) for t in net.task_names})
    net.freeze(net.task_names)
    net.eval()
    with torch.no_grad():
        for k, task in enumerate(net.task_names):
            one_hot = torch.nn.functional.one_hot(torch.tensor(k), 3).float()
            assert torch.equal(net.superposed(x, net.task_names, one_hot), net(x, task=task))
        mixed = net.superposed(x, ["a", "b"], torch.tensor([0.5, 0.5]))
    assert not torch.equal(mixed, net(x, task="a"))


def test_one_shot_rates_have_a_gradient_for_each_task_and_leave_the_network_unchanged(separable):
    net, test = separable
    net.train()  # infer_task runs in eval mode and restores the mode after
    before = snapshot(net)
    grads = [None if p.grad is None else p.grad.clone() for p in net.parameters()]
    x = test["p1"][0][:16]
    guess = net.infer_task(x, method="one-shot", per="batch")
    assert guess.scores.shape == (3, 1) and torch.isfinite(guess.scores).all()
    assert all(torch.equal(v, snapshot(net)[k]) for k, v in before.items())
    assert net.training  # and no gradient accumulated into the parameters
    assert all(
        (g is None) == (p.grad is None) and (g is None or torch.equal(g, p.grad))
        for g, p in zip(grads, net.parameters(), strict=True)
    )
    net.eval()


def test_bad_requests_are_refused_with_what_is_allowed(separable):
    net, test = separable
    x = test["p0"][0][:4]
    with pytest.raises(TaskError, match="unknown task-inference method 'vote'"):
        net.infer_task(x, method="vote")
    with pytest.raises(TaskError, match="per batch only"):
        net.infer_task(x, method="one-shot")
    with pytest.raises(TaskError, match="per must be one of"):
        net.infer_task(x, per="token")
    with pytest.raises(TaskError, match=r"no classification task .* shape \(5,\)"):
        net.infer_task(torch.zeros(2, 5))
    with pytest.raises(TaskError, match="'nope'"):
        net.infer_task(x, tasks=["p0", "nope"])
    fresh = _mlp(["p0", "p1"])
    select_subnetworks(fresh, ["p0"], method="random")  # p1 not selected: never a candidate
    assert fresh.infer_task(x).candidates == ("p0",)
    with pytest.raises(TaskError, match="'p1' has no subnetwork yet"):
        fresh.infer_task(x, tasks=["p0", "p1"])
    with pytest.raises(TaskError, match="differ in output width"):
        wide = MultitaskNetwork(
            NetworkSpec(
                (linear(FEATURES, 8), relu()),
                (
                    TaskSpec("a", "classification", (FEATURES,), head=[linear(8, 2)], keep_fraction=0.3),
                    TaskSpec("b", "classification", (FEATURES,), head=[linear(8, 3)], keep_fraction=0.3),
                ),
            )
        )
        select_subnetworks(wide, wide.task_names, method="random")
        wide.infer_task(x, method="one-shot", per="batch")
