import pytest
import torch

from rsn2.errors import SpecError
from rsn2.network import MultitaskNetwork
from rsn2.training import EarlyStopping, TaskData, TrainConfig, fit_stage, validation_split
from tests.helpers import mlp_spec, random_data


def test_early_stopping_counts_epochs_without_improvement_beyond_min_delta():
    stop = EarlyStopping(patience=3, min_delta=0.01)
    assert stop.update(0, 1.0)
    assert not stop.update(1, 0.995)  # not more than 0.01 better
    assert not stop.update(2, 0.99)
    assert not stop.should_stop
    assert not stop.update(3, 0.991)
    assert stop.should_stop and stop.best_epoch == 0


def test_validation_split_is_seeded_and_disjoint():
    data = TaskData(torch.arange(100).float().unsqueeze(1), torch.arange(100))
    a_train, (a_x, _) = validation_split(data, 0.1, seed=5)
    _b_train, (b_x, _) = validation_split(data, 0.1, seed=5)
    _c_train, (c_x, _) = validation_split(data, 0.1, seed=6)
    assert torch.equal(a_x, b_x) and not torch.equal(a_x, c_x)
    assert len(a_x) == 10 and len(a_train.x) == 90
    assert set(a_x.flatten().tolist()).isdisjoint(a_train.x.flatten().tolist())


def test_task_data_and_config_validation():
    with pytest.raises(SpecError, match="x has 3 samples but y has 2"):
        TaskData(torch.zeros(3, 1), torch.zeros(2))
    with pytest.raises(SpecError, match="optimizer must be one of"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(SpecError, match="batch_size must be >= 1"):
        TrainConfig(batch_size=0)


def test_fit_stage_learns_history_and_restores_best_epoch():
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec(n_tasks=2, keep=0.4, width=32))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(400, 8, generator=gen)
    y0 = (x[:, 0] > 0.5).long()  # learnable
    y1 = (x[:, 1] + x[:, 2] > 1.0).long()
    config = TrainConfig(batch_size=32, max_epochs=30, patience=3, min_delta=0.001, progress=False)
    result = fit_stage(net, {"t0": TaskData(x, y0), "t1": TaskData(x, y1)}, config)
    hist = result.history
    assert hist[0]["val_loss"].keys() == {"t0", "t1"}
    assert hist[-1]["val_metric"]["t0"] >= 0.75  # chance is about 0.5 on this 40-sample validation split
    best = min(h["val_loss_total"] for h in hist)
    assert hist[result.best_epoch - 1]["val_loss_total"] == best
    assert len(hist) < 30 or result.best_epoch == 30
    assert result.selection is not None and result.selection.method == "gradient"


def test_per_task_batch_size_and_training_is_deterministic():
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        net = MultitaskNetwork(mlp_spec(n_tasks=1))
        d = random_data(net, "t0", n=50)
        d.batch_size = 8
        fit_stage(net, {"t0": d}, TrainConfig(max_epochs=2, progress=False))
        outs.append(net(d.x, "t0"))
    assert torch.equal(*outs)
