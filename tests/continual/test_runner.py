import json

import pytest

import rsn2.continual.runner as runner
from rsn2.cli.main import main
from rsn2.continual.summary import write_summary
from rsn2.errors import ResultsFolderError

from .helpers_cl import tiny_config, tiny_stream


@pytest.fixture
def synthetic_stream(monkeypatch):
    monkeypatch.setattr(runner, "build_stream", lambda *a, **k: tiny_stream(3))


def test_run_writes_runs_results_and_figure_and_resumes(tmp_path, synthetic_stream, monkeypatch):
    config = tiny_config(methods={"rsn2": {}, "finetune": {}, "joint": {}})
    results = runner.run_benchmark(config, tmp_path, seeds=2, log=lambda _: None)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        f"{m}-seed{s}.json" for m in ("finetune", "joint", "rsn2") for s in (0, 1)
    ]
    assert (tmp_path / "accuracy.png").stat().st_size > 0
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored == results
    rsn2 = results["methods"]["rsn2"]
    assert rsn2["seeds"] == 2 and rsn2["BWT"]["values"] == [0.0, 0.0]
    assert len(rsn2["ACC"]["values"]) == 2 and len(rsn2["R_mean"]) == 3
    assert results["methods"]["joint"]["BWT"]["mean"] is None

    def no_training(*a, **k):
        raise AssertionError("a stored run was trained again")

    monkeypatch.setattr(runner, "run_method", no_training)
    assert runner.run_benchmark(config, tmp_path, seeds=2, log=lambda _: None) == results


def test_runs_of_other_settings_are_refused_before_training(tmp_path, synthetic_stream, monkeypatch):
    runner.run_benchmark(tiny_config(methods={"stl": {}}), tmp_path, seeds=1, log=lambda _: None)
    calls = []
    monkeypatch.setattr(runner, "run_method", lambda *a, **k: calls.append(a))
    other = tiny_config(methods={"stl": {}}, training={"batch_size": 8, "epochs": 2, "lr": 0.01})
    with pytest.raises(ResultsFolderError, match="other settings"):
        runner.run_benchmark(other, tmp_path, seeds=1, log=lambda _: None)
    with pytest.raises(ResultsFolderError, match="other settings"):
        runner.run_benchmark(tiny_config(methods={"stl": {}}), tmp_path, seeds=1, smoke=True, log=lambda _: None)
    assert calls == []


def test_summary_has_the_issue_shape_and_targets(tmp_path, synthetic_stream):
    config = tiny_config(
        methods={
            "rsn2": {},
            "rsn2-all": {},
            "packnet": {"retrain_epochs": 1},
            "packnet-disjoint": {"retrain_epochs": 1},
        }
    )
    runner.run_benchmark(config, tmp_path / "tiny", seeds=1, log=lambda _: None)
    json_path, readme = write_summary(tmp_path)
    combined = json.loads(json_path.read_text())
    assert set(combined) == {"tiny"} and set(combined["tiny"]) == {"rsn2", "rsn2-all", "packnet", "packnet-disjoint"}
    assert set(combined["tiny"]["rsn2"]) == {"ACC", "BWT", "forgetting", "LA", "seeds"}
    assert set(combined["tiny"]["rsn2"]["ACC"]) == {"values", "mean", "std"}
    text = readme.read_text()
    for mode in ("rsn2", "rsn2-all"):
        assert f"BWT exactly 0.0 in every seed ({mode}): met" in text
    best = max(("rsn2", "rsn2-all"), key=lambda m: combined["tiny"][m]["ACC"]["mean"])
    for packnet in ("packnet", "packnet-disjoint"):
        assert f"ACC of rsn2's best mode ({best}) at least {packnet}'s" in text
    stored = json.loads((tmp_path / "tiny" / "results.json").read_text())["methods"]["rsn2"]
    row = next(line for line in text.splitlines() if line.startswith("| rsn2 |")).split("|")
    assert float(row[6]) == round(min(stored["final_mean"]), 2)  # the worst task
    assert float(row[7]) == round(stored["capacity"]["mean"], 3) > 0  # WSN's capacity measure
    assert "| ewc (not run here) |" in text  # published figure without a run of ours


def test_summary_of_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(ResultsFolderError, match="no benchmark results"):
        write_summary(tmp_path)


def test_cli_reports_a_bad_file_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "b.yaml"
    path.write_text("name: b\ntitle: t\n")
    assert main(["cl", "run", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "rsn2 cl: error:" in err and "missing key(s)" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_method_the_file_does_not_have(tmp_path, capsys):
    path = tmp_path / "b.yaml"
    path.write_text(
        "name: b\ntitle: t\nstream: {kind: permuted, dataset: mnist, tasks: 2}\nnetwork: {kind: mlp}\n"
        "keep_fraction: 0.1\nmethods: {rsn2: {}}\n"
    )
    assert main(["cl", "run", str(path), "--out", str(tmp_path / "out"), "--methods", "ewc"]) == 1
    assert "not in" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_runs_a_shipped_benchmark_on_real_data(shared_data, tmp_path, capsys):
    out = tmp_path / "pmnist"
    args = ["cl", "run", "benchmarks/cl/pmnist.yaml", "--out", str(out), "--seeds", "1", "--smoke"]
    assert main([*args, "--data-dir", str(shared_data), "--methods", "rsn2,finetune"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["smoke"] is True and len(results["tasks"]) == 10
    assert results["methods"]["rsn2"]["BWT"]["values"] == [0.0]
