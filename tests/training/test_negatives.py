"""Self-made negatives: what they are made of, that they only add a loss, and where they are refused."""

import pytest
import torch

from rsn2.errors import ConfigError, SpecError
from rsn2.network import MultitaskNetwork, NetworkSpec, TaskSpec, linear, relu
from rsn2.selection import select_subnetworks
from rsn2.training import TrainConfig, fit_stage
from rsn2.training.checkpoint import settings_of
from rsn2.training.loop import train_step
from rsn2.training.negatives import PATCH_ORDER, image_shape, make_negatives, uniform_target_loss
from tests.continual.helpers_cl import tiny_config
from tests.helpers import mlp_spec, random_data, snapshot


def test_half_the_batch_is_rotated_and_half_patch_shuffled_the_same_way_every_time():
    x = torch.arange(6 * 16, dtype=torch.float32).reshape(6, 16)  # flat 4x4 one-channel images
    neg = make_negatives(x, (16,))
    assert neg.shape == x.shape and torch.equal(neg, make_negatives(x, (16,)))
    images = x.reshape(6, 1, 4, 4)
    for i, turns in enumerate((1, 2, 3)):  # the first half: 90, 180, 270 degrees by position
        assert torch.equal(neg[i].reshape(1, 4, 4), torch.rot90(images[i], turns, (1, 2)))
    patches = images[3:].reshape(3, 16)  # 4x4 grid of 1x1 patches: pixels moved in PATCH_ORDER
    assert torch.equal(neg[3:], patches[:, list(PATCH_ORDER)])
    assert all(i != p for i, p in enumerate(PATCH_ORDER))  # every patch moves
    wide = torch.rand(2, 3, 4, 6)
    assert torch.equal(make_negatives(wide, (3, 4, 6))[0], torch.rot90(wide[0], 2, (1, 2)))  # not square: 180


def test_only_images_make_negatives():
    assert image_shape((784,)) == (1, 28, 28) and image_shape((3, 32, 32)) == (3, 32, 32)
    with pytest.raises(SpecError, match=r"flat square image .* got \(10,\)"):
        image_shape((10,))
    with pytest.raises(SpecError, match="negatives must be a weight >= 0"):
        TrainConfig(negatives=-0.5)


def test_the_uniform_target_loss_is_least_for_uniform_outputs():
    assert uniform_target_loss(torch.zeros(4, 5)).item() == pytest.approx(torch.log(torch.tensor(5.0)).item())
    assert uniform_target_loss(torch.tensor([[9.0, 0.0]])) > uniform_target_loss(torch.zeros(1, 2))


def _image_net():
    trunk = (linear(16, 12), relu())
    tasks = tuple(TaskSpec(t, "classification", (16,), head=[linear(12, 3)], keep_fraction=0.4) for t in "ab")
    return MultitaskNetwork(NetworkSpec(trunk, tasks))


def test_a_step_with_negatives_reports_the_tasks_own_loss_and_moves_the_weights_differently():
    results = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        net = _image_net()
        data = random_data(net, "a", n=32)
        select_subnetworks(net, ["a"], {"a": (data.x, data.y)})
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        losses = train_step(net, {"a": (data.x, data.y)}, optimizer, negatives=weight)
        results[weight] = (losses["a"], snapshot(net))
    assert results[0.0][0] == pytest.approx(results[1.0][0])  # the same forward on the task's own samples
    assert any(not torch.equal(v, results[1.0][1][k]) for k, v in results[0.0][1].items())


def test_training_with_negatives_leaves_earlier_tasks_bit_identical_and_is_refused_for_non_images():
    torch.manual_seed(0)
    net = _image_net()
    config = TrainConfig(max_epochs=2, batch_size=16, progress=False, negatives=0.5)
    fit_stage(net, {"a": random_data(net, "a", n=48)}, config)
    x = torch.rand(8, 16)
    before = net(x, "a")
    fit_stage(net, {"b": random_data(net, "b", n=48, seed=1)}, config)
    assert torch.equal(net(x, "a"), before)
    other = MultitaskNetwork(mlp_spec())  # 8 input features: not a square image
    with pytest.raises(SpecError, match="task 't0': negatives are made from images"):
        fit_stage(other, {"t0": random_data(other, "t0")}, config)


def test_the_setting_is_recorded_only_when_on_so_older_runs_keep_their_identity():
    assert "negatives" not in settings_of(TrainConfig())
    assert settings_of(TrainConfig(negatives=0.5))["negatives"] == 0.5


def test_continual_files_take_negatives_for_rsn2_only():
    assert tiny_config(methods={"rsn2": {"negatives": 0.5}}).methods["rsn2"]["negatives"] == 0.5
    with pytest.raises(ConfigError, match="negatives must be a weight >= 0"):
        tiny_config(methods={"rsn2": {"negatives": -1}})
    with pytest.raises(ConfigError, match="negatives"):
        tiny_config(methods={"ewc": {"negatives": 0.5}})
