"""Early stopping per task: each group of tasks sharing a subnetwork keeps its own best epoch."""

import pytest
import torch

import rsn2.training.loop as loop
from rsn2.errors import CheckpointError, SpecError
from rsn2.io import checksums
from rsn2.network import MultitaskNetwork
from rsn2.training import TaskData, TrainConfig, evaluate, fit_stage, validation_split
from rsn2.training.early_stopping import stopping_groups
from tests.helpers import mlp_spec


def test_stopping_groups_join_tasks_that_share_a_subnetwork():
    reads = {"age": ["utk", "age"], "gender": ["utk", "gender"], "cifar": ["cifar"], "race": ["race", "utk"]}
    assert stopping_groups(reads, "stage") == [("age", "gender", "cifar", "race")]
    assert stopping_groups(reads, "task") == [("age", "gender", "race"), ("cifar",)]
    assert stopping_groups({"a": ["x"], "b": ["y"], "c": ["y", "z"], "d": ["z"]}, "task") == [("a",), ("b", "c", "d")]
    with pytest.raises(SpecError, match=r"early_stopping must be one of \('stage', 'task'\), got 'epoch'"):
        stopping_groups(reads, "epoch")
    with pytest.raises(SpecError, match="early_stopping must be one of"):
        TrainConfig(early_stopping="per-task")


def _setup():
    """t0 learns a rule and keeps improving; t1 has random labels, so its validation loss soon rises."""
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec(n_tasks=2, keep=0.4, width=32))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(400, 8, generator=gen)
    data = {
        "t0": TaskData(x, (x[:, 0] + 0.5 * x[:, 3] > 0.75).long()),
        "t1": TaskData(x, torch.randint(0, 4, (400,), generator=gen)),
    }
    return net, data


def _config(**kw):
    return TrainConfig(**{"batch_size": 32, "max_epochs": 20, "patience": 2, "min_delta": 0.0, "progress": False, **kw})


def test_each_task_keeps_its_own_best_epoch_on_the_trajectory_it_would_follow_anyway():
    net, data = _setup()
    result = fit_stage(net, data, _config(early_stopping="task"))
    free, data = _setup()  # nobody stops: the trajectory every task follows either way
    unstopped = fit_stage(free, data, _config(patience=100))

    hist = result.history
    t1_epochs = [h["epoch"] for h in hist if "t1" in h["val_loss"]]
    assert result.best_epochs["t1"] < result.best_epochs["t0"]
    assert len(t1_epochs) < len(hist)  # t1 stopped while t0 trained on
    for h in hist:  # each task's validation losses are those of the run where nobody stops
        for t, loss in h["val_loss"].items():
            assert loss == unstopped.history[h["epoch"] - 1]["val_loss"][t]
    for t in ("t0", "t1"):  # each ends with the weights of its own lowest validation loss
        losses = {h["epoch"]: h["val_loss"][t] for h in hist if t in h["val_loss"]}
        assert result.best_epochs[t] == min(losses, key=losses.get)
        _, (x_val, y_val) = validation_split(data[t], 0.1, 0)
        assert evaluate(net, t, x_val, y_val)["loss"] == pytest.approx(losses[result.best_epochs[t]], abs=1e-6)
    assert result.best_epoch == max(result.best_epochs.values())


def test_task_scope_is_the_default_and_stage_scope_keeps_one_best_epoch_for_all():
    assert TrainConfig().early_stopping == "task"
    net, data = _setup()
    result = fit_stage(net, data, _config(early_stopping="stage"))
    assert set(result.best_epochs.values()) == {result.best_epoch}
    assert all(h["val_loss"].keys() == {"t0", "t1"} for h in result.history)


class Interrupted(Exception):
    pass


def test_per_task_stopping_resumes_exactly_after_a_task_stopped(tmp_path, monkeypatch):
    config = _config(early_stopping="task")
    reference, data = _setup()
    expected = fit_stage(reference, data, config)
    t1_last = max(h["epoch"] for h in expected.history if "t1" in h["val_loss"])
    assert t1_last < len(expected.history)

    real = loop.save_stage_checkpoint

    def save_then_stop(path, identity, progress, optimizer):
        real(path, identity, progress, optimizer)
        if progress.epochs_done == t1_last + 1:  # t1 has stopped, t0 trains on
            raise Interrupted

    path = tmp_path / "stage.safetensors"
    net, data = _setup()
    monkeypatch.setattr(loop, "save_stage_checkpoint", save_then_stop)
    with pytest.raises(Interrupted):
        fit_stage(net, data, config, checkpoint=path)
    monkeypatch.undo()

    net, data = _setup()
    result = fit_stage(net, data, config, checkpoint=path)
    assert result.resumed and result.history == expected.history
    assert result.best_epochs == expected.best_epochs
    assert checksums(net) == checksums(reference)

    net, data = _setup()  # the stage scope is another setting: its checkpoint does not resume this one
    with pytest.raises(CheckpointError, match="settings differ"):
        fit_stage(net, data, _config(early_stopping="stage"), checkpoint=path)
