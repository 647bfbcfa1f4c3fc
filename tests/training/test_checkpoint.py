"""Epoch checkpoints: an interrupted stage resumes to exactly the result of an uninterrupted one."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import rsn2.training.loop as loop
from rsn2.errors import CheckpointError
from rsn2.io import checksums
from rsn2.network import MultitaskNetwork
from rsn2.training import TaskData, TrainConfig, fit_stage
from tests.helpers import mlp_spec


class Interrupted(Exception):
    pass


def _setup(second_stage: bool = False):
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec(n_tasks=2, keep=0.4, width=32))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(300, 8, generator=gen)
    data = {"t0": TaskData(x, (x[:, 0] > 0.5).long()), "t1": TaskData(x, (x[:, 1] + x[:, 2] > 1.0).long())}
    if second_stage:  # t0 trained and frozen first: the checkpointed stage must leave it alone
        fit_stage(net, {"t0": data["t0"]}, TrainConfig(batch_size=32, max_epochs=2, progress=False))
        data = {"t1": data["t1"]}
    return net, data


CONFIG = TrainConfig(batch_size=32, max_epochs=6, patience=6, min_delta=0.0, progress=False)


def _interrupt_after(monkeypatch, epochs: int) -> None:
    real = loop.save_stage_checkpoint

    def save_then_stop(path, identity, progress, optimizer):
        real(path, identity, progress, optimizer)
        if progress.epochs_done == epochs:
            raise Interrupted

    monkeypatch.setattr(loop, "save_stage_checkpoint", save_then_stop)


@pytest.mark.parametrize("second_stage", [False, True])
def test_resumed_stage_equals_uninterrupted_stage(tmp_path, monkeypatch, second_stage):
    reference, data = _setup(second_stage)
    expected = fit_stage(reference, data, CONFIG)

    net, data = _setup(second_stage)
    frozen_t0 = checksums(net)["t0"] if second_stage else None
    path = tmp_path / "stage.safetensors"
    _interrupt_after(monkeypatch, 3)
    with pytest.raises(Interrupted):
        fit_stage(net, data, CONFIG, checkpoint=path)
    monkeypatch.undo()

    net, data = _setup(second_stage)  # a fresh process: same seed, same selection
    result = fit_stage(net, data, CONFIG, checkpoint=path)
    assert result.resumed and not expected.resumed and result.earlier_seconds > 0
    assert result.history == expected.history
    assert result.best_epoch == expected.best_epoch
    assert checksums(net) == checksums(reference)  # every subnetwork's bits, and the free positions'
    if second_stage:  # the earlier stage's subnetwork (weights, bias, task module) is bit-identical
        assert checksums(net)["t0"] == frozen_t0


def test_checkpoint_of_a_finished_stage_trains_no_further(tmp_path):
    net, data = _setup()
    path = tmp_path / "stage.safetensors"
    config = TrainConfig(batch_size=32, max_epochs=3, progress=False)
    first = fit_stage(net, data, config, checkpoint=path)
    with safe_open(str(path), framework="pt") as f:
        assert json.loads(f.metadata()["rsn2"])["epochs_done"] == 3

    again, data = _setup()
    second = fit_stage(again, data, config, checkpoint=path)
    assert second.history == first.history
    assert checksums(again) == checksums(net)


def test_checkpoint_of_other_settings_is_refused_and_nothing_changes(tmp_path):
    net, data = _setup()
    path = tmp_path / "stage.safetensors"
    fit_stage(net, data, TrainConfig(batch_size=32, max_epochs=1, progress=False), checkpoint=path)
    before = path.read_bytes()

    other, data = _setup()
    with pytest.raises(CheckpointError, match="settings differ"):
        fit_stage(other, data, TrainConfig(batch_size=32, max_epochs=1, lr=0.01, progress=False), checkpoint=path)
    assert path.read_bytes() == before


def test_unreadable_or_foreign_checkpoint_is_refused(tmp_path):
    config = TrainConfig(batch_size=32, max_epochs=1, progress=False)
    path = tmp_path / "stage.safetensors"
    path.write_bytes(b"not a safetensors file")
    net, data = _setup()
    with pytest.raises(CheckpointError, match=r"not a readable safetensors.*delete it"):
        fit_stage(net, data, config, checkpoint=path)
    save_file({"w": torch.zeros(2)}, str(path), metadata={"rsn2": json.dumps({"format": "rsn2-model"})})
    net, data = _setup()
    with pytest.raises(CheckpointError, match="not an rsn2 stage checkpoint"):
        fit_stage(net, data, config, checkpoint=path)


def test_conv_stage_with_rescale_lr_resumes_exactly_and_keeps_the_frozen_task(tmp_path, monkeypatch):
    """Two ways a resume went wrong, each failing this test before its fix:

    - rescale_lr puts kernels and the rest in separate param groups, so the optimizer's state order is
      not the stage's parameter order: the frozen-moment check compared a kernel's moments with another
      kernel's mask and refused a good checkpoint;
    - a conv network trains in channels_last, but moments loaded from the checkpoint stayed contiguous:
      the fused Adam step applied them to other positions, the frozen task's weights included.
    """
    from rsn2.network import MultitaskNetwork as Net
    from tests.helpers import conv_spec, random_data

    def setup():
        torch.manual_seed(0)
        net = Net(conv_spec(keep=0.3))
        data = {t: random_data(net, t, n=80, seed=i) for i, t in enumerate(net.task_names)}
        fit_stage(net, {"img": data["img"]}, TrainConfig(batch_size=16, max_epochs=2, progress=False))
        return net, {"rgb": data["rgb"]}  # rgb enters through its own conv adapter

    config = TrainConfig(batch_size=16, max_epochs=4, patience=4, min_delta=0.0, progress=False, rescale_lr=True)
    reference, data = setup()
    fit_stage(reference, data, config)
    net, data = setup()
    path = tmp_path / "stage.safetensors"
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        fit_stage(net, data, config, checkpoint=path)
    monkeypatch.undo()
    net, data = setup()
    assert fit_stage(net, data, config, checkpoint=path).resumed
    assert checksums(net) == checksums(reference)


def _resnet_setup():
    from rsn2 import multitask
    from tests.user_models import MODELS, inputs_for, tasks_for

    torch.manual_seed(0)
    net = multitask(MODELS["resnet"][0](), tasks_for("resnet", ("t0", "t1"), keep=0.4))
    return net, {t: TaskData(*inputs_for("resnet", n=96, seed=i)) for i, t in enumerate(("t0", "t1"))}


def test_a_converted_model_with_batch_norm_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """The batch norms' running statistics are checkpointed and restored with the best epoch's weights
    (per stopping group: each task stops on its own here)."""
    config = TrainConfig(batch_size=32, max_epochs=5, patience=2, min_delta=0.0, progress=False, precision="fp32")
    reference, data = _resnet_setup()
    expected = fit_stage(reference, data, config)
    net, data = _resnet_setup()
    path = tmp_path / "stage.safetensors"
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        fit_stage(net, data, config, checkpoint=path)
    monkeypatch.undo()
    net, data = _resnet_setup()
    result = fit_stage(net, data, config, checkpoint=path)
    assert result.resumed and result.history == expected.history
    assert checksums(net) == checksums(reference)
    bn = net.body.bn.copies["t0"]
    assert int(bn.num_batches_tracked) == 3 * (expected.best_epochs["t0"])  # the best epoch's statistics
