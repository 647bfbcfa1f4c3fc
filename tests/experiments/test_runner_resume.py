"""`rsn2 run` resumes an interrupted seed from its checkpoints: on synthetic data, so it runs everywhere."""

import json
from pathlib import Path

import pytest
import torch

import rsn2.experiments.runner as runner
import rsn2.training.loop as loop
from rsn2.cli.main import main
from rsn2.experiments.load_tasks import ExperimentTask
from rsn2.io import checksums, load_model
from rsn2.training import TaskData

EXP5 = Path(__file__).resolve().parents[2] / "experiments" / "exp5.yaml"  # FC-A: (mnist + fashion), then boston


def _synthetic(config, data_dir, smoke=False):
    """Learnable stand-ins of the right shapes for every task of ``config`` (no files read)."""
    out = {}
    for i, task in enumerate(config.tasks):
        gen = torch.Generator().manual_seed(i)
        features = 13 if task.dataset == "boston" else 784
        x = torch.rand(200, features, generator=gen)
        if task.dataset == "boston":
            y = x[:, :3].sum(dim=1) / 3
        else:
            y = (x[:, i] * 10).long().clamp(max=9)
        train = TaskData(x[:160], y[:160], batch_size=task.batch_size)
        out[task.name] = ExperimentTask(train, x[160:], y[160:], None, "synthetic")
    return out


@pytest.mark.slow
def test_interrupted_seed_resumes_from_its_checkpoints(tmp_path, monkeypatch):
    """Stopped during its second stage, a rerun keeps the first stage, resumes the second from its
    epoch checkpoint, trains the controls, and ends exactly as an uninterrupted run does."""
    monkeypatch.setattr(runner, "load_datasets", _synthetic)

    def args(out):
        return ["run", str(EXP5), "--out", str(out), "--smoke", "--data-dir", str(tmp_path / "no-data")]

    assert main(args(tmp_path / "whole")) == 0

    out = tmp_path / "interrupted"
    real_save = loop.save_stage_checkpoint

    def save_then_stop(path, *a, **k):
        real_save(path, *a, **k)
        if Path(path).name.startswith("stage1."):
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_stage_checkpoint", save_then_stop)
    assert main(args(out)) == 130
    kept = sorted(p.name for p in (out / "checkpoints" / "seed0").iterdir())
    assert kept == ["stage0.safetensors", "stage1.epochs.safetensors"]
    assert not (out / "seeds" / "seed0.json").exists()
    monkeypatch.setattr(loop, "save_stage_checkpoint", real_save)

    trained: list[list[str]] = []
    real_fit = runner.fit_stage

    def recording_fit(net, data, *a, **k):
        trained.append(list(data))
        return real_fit(net, data, *a, **k)

    monkeypatch.setattr(runner, "fit_stage", recording_fit)
    assert main(args(out)) == 0
    assert trained == [["boston"], ["mnist"], ["fashion"], ["boston"]]  # stage 0 not again; then the controls
    assert not (out / "checkpoints").exists()
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["tasks"] == whole["tasks"]
    assert resumed["stage_losses"] == whole["stage_losses"]
    assert json.loads((out / "seeds" / "seed0.json").read_text())["resumed"] is True
    a, b = load_model(out / "model.safetensors"), load_model(tmp_path / "whole" / "model.safetensors")
    assert checksums(a) == checksums(b)


@pytest.mark.slow
def test_a_rerun_of_a_finished_run_trains_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "load_datasets", _synthetic)
    args = ["run", str(EXP5), "--out", str(tmp_path / "r"), "--smoke", "--data-dir", str(tmp_path), "--seeds", "2"]
    assert main(args) == 0
    first = json.loads((tmp_path / "r" / "results.json").read_text())
    assert len(first["tasks"]["mnist"]["multitask"]["values"]) == 2

    def refuse(*a, **k):
        pytest.fail("finished seeds must not be trained again")

    monkeypatch.setattr(runner, "run_seed", refuse)
    assert main(args) == 0
    assert json.loads((tmp_path / "r" / "results.json").read_text())["tasks"] == first["tasks"]
