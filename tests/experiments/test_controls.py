"""Dense controls in an experiment run: one per distinct (dataset, task layers), on synthetic data."""

import torch

from rsn2.experiments import parse_config, runner
from rsn2.experiments.load_tasks import ExperimentTask
from rsn2.experiments.report import write_report
from rsn2.training import TaskData, TrainConfig


def _synthetic(n: int, seed: int) -> ExperimentTask:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 784, generator=gen)
    y = (x[:, :392].sum(1) > x[:, 392:].sum(1)).long()  # learnable, two classes
    return ExperimentTask(TaskData(x, y), x[:32], y[:32], None, "synthetic")


def test_tasks_on_the_same_data_share_one_dense_control(monkeypatch, tmp_path):
    config = parse_config(
        {
            "name": "twins",
            "title": "two subnetworks on one dataset, one on another",
            "network": {"kind": "fc-a"},
            "tasks": {
                "a": {"dataset": "mnist", "keep_fraction": 0.2},
                "b": {"dataset": "mnist", "keep_fraction": 0.2},
                "c": {"dataset": "fashion-mnist", "keep_fraction": 0.2},
            },
            "stages": [["a", "b", "c"]],
        }
    )
    mnist = _synthetic(96, 0)
    data = {"a": mnist, "b": mnist, "c": _synthetic(96, 1)}
    trained = []
    real = runner.build_control
    monkeypatch.setattr(
        runner, "build_control", lambda config, spec, task: trained.append(task) or real(config, spec, task)
    )
    train = TrainConfig(max_epochs=1, batch_size=32, progress=False)
    result = runner.run_seed(config, data, seed=0, train=train, model_path=None)
    assert trained == ["a", "c"]
    tasks = result["tasks"]
    assert [tasks[t]["control_trained_as"] for t in "abc"] == ["a", "a", "c"]
    assert tasks["b"]["control"] == tasks["a"]["control"]
    assert tasks["b"]["control_per_class"] == tasks["a"]["control_per_class"]
    results = runner.aggregate(config, [result], data, smoke=True, command="test")
    assert results["tasks"]["b"]["control_trained_as"] == "a"
    write_report(results, tmp_path / "report.md")
    assert "b: scored with the dense control trained for a" in (tmp_path / "report.md").read_text()
    single = result["controls_bytes"] // 3  # bytes count once per task the multitask model replaces
    assert result["controls_bytes"] == 3 * single > 0
