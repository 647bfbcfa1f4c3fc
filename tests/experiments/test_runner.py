"""`rsn2 run` in smoke mode on the real data: every experiment file end to end, and resuming."""

import itertools
import json
from pathlib import Path

import pytest
import torch

from rsn2.cli.main import main

EXPERIMENTS = sorted((Path(__file__).resolve().parents[2] / "experiments").glob("exp*.yaml"))
pytestmark = pytest.mark.real_data


ABLATIONS = sorted((Path(__file__).resolve().parents[2] / "experiments" / "ablations").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS + ABLATIONS, ids=lambda p: p.stem)
def test_every_experiment_runs_in_smoke_mode(path, tmp_path, shared_data, capsys):
    out = tmp_path / path.stem
    assert main(["run", str(path), "--out", str(out), "--smoke", "--data-dir", str(shared_data)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["smoke"] is True and results["seeds"] == 1
    for row in results["tasks"].values():
        assert {"multitask", "control", "paper", "metric"} <= row.keys()
        assert row["multitask"]["values"] and row["control"]["values"]
    assert (out / "report.md").read_text().startswith(f"# {path.stem}")
    assert (out / "figures" / "bars.png").is_file() and (out / "model.safetensors").is_file()
    losses = results["stage_losses"][0]
    for earlier, later in itertools.pairwise(losses):  # earlier tasks' test losses stay identical
        assert all(later[t] == v for t, v in earlier.items())
    if len(results["stages"]) > 1:
        assert (out / "figures" / "stage_losses.png").is_file()
    if path.stem == "exp1":
        assert "ensemble" in results["tasks"]
    if path.stem == "exp3-carveout":  # what shaped the run is recorded, in results and report
        assert results["selection"]["rescale"] is False and results["training"]["batch_size"] == 64
        assert "Selection: method=gradient, rescale=False" in (out / "report.md").read_text()


def test_rerun_resumes_finished_seeds(tmp_path, shared_data, monkeypatch):
    out = tmp_path / "exp3"
    args = ["run", str(EXPERIMENTS[2]), "--out", str(out), "--smoke", "--data-dir", str(shared_data), "--seeds", "2"]
    assert main(args) == 0
    first = json.loads((out / "results.json").read_text())
    assert first["seeds"] == 2 and len(first["tasks"]["mnist"]["multitask"]["values"]) == 2

    def refuse(*a, **k):
        raise AssertionError("finished seeds must not be trained again")

    monkeypatch.setattr("rsn2.experiments.runner.run_seed", refuse)
    assert main(args) == 0
    assert json.loads((out / "results.json").read_text())["tasks"] == first["tasks"]


def test_run_refuses_an_unknown_device(tmp_path, shared_data, capsys):
    code = main(["run", str(EXPERIMENTS[2]), "--out", str(tmp_path / "x"), "--smoke", "--device", "tpu"])
    assert code == 1
    assert "allowed: 'auto'" in capsys.readouterr().err
    assert not (tmp_path / "x" / "results.json").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
def test_smoke_run_on_cuda_records_the_gpu(tmp_path, shared_data):
    out = tmp_path / "exp4"
    args = ["run", str(EXPERIMENTS[3]), "--out", str(out), "--smoke", "--device", "cuda"]
    assert main([*args, "--data-dir", str(shared_data)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["device"].startswith("cuda: ")


def test_interrupted_seed_resumes_from_its_checkpoints(tmp_path, shared_data, monkeypatch):
    """exp5 (two stages, three controls) stopped during its second stage: the rerun keeps the first
    stage, resumes the second from its epoch checkpoint, and ends as an uninterrupted run does."""
    import rsn2.experiments.runner as runner
    import rsn2.training.loop as loop
    from rsn2.io import checksums, load_model

    def args(out):
        return ["run", str(EXPERIMENTS[4]), "--out", str(out), "--smoke", "--data-dir", str(shared_data)]

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
    monkeypatch.undo()

    trained: list[list[str]] = []
    real_fit = runner.fit_stage

    def recording_fit(net, data, *a, **k):
        trained.append(list(data))
        return real_fit(net, data, *a, **k)

    monkeypatch.setattr(runner, "fit_stage", recording_fit)
    assert main(args(out)) == 0
    assert trained[0] == ["boston"]  # stage 0 was not trained again; then the three controls
    assert len(trained) == 4
    assert not (out / "checkpoints").exists()
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["tasks"] == whole["tasks"]
    assert resumed["stage_losses"] == whole["stage_losses"]
    seed = json.loads((out / "seeds" / "seed0.json").read_text())
    assert seed["resumed"] is True
    a, b = load_model(out / "model.safetensors"), load_model(tmp_path / "whole" / "model.safetensors")
    assert checksums(a) == checksums(b)
