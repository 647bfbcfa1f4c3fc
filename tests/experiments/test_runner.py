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


@pytest.mark.slow
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
