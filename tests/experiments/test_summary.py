import json
import shutil
from pathlib import Path

from rsn2.cli.main import main
from rsn2.experiments.summary import summarize

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def _results(name, smoke=False):
    row = {
        "metric": "accuracy",
        "paper": {"multitask": 0.97, "control": 0.97},
        "kept_fraction": 0.1,
        "multitask": {"values": [0.95, 0.96], "mean": 0.955, "std": 0.005},
        "control": {"values": [0.97, 0.98], "mean": 0.975, "std": 0.005},
    }
    return {
        "experiment": name,
        "smoke": smoke,
        "seeds": 2,
        "tasks": {"mnist": row},
        "device": "cpu: 2 cores",
        "wall_seconds": 12.5,
        "model_bytes": 100,
        "controls_bytes": 200,
    }


def test_summary_lists_every_experiment_and_marks_misses(tmp_path):
    (tmp_path / "exp3").mkdir()
    (tmp_path / "exp3" / "results.json").write_text(json.dumps(_results("exp3")))
    (tmp_path / "exp5").mkdir()
    (tmp_path / "exp5" / "results.json").write_text(json.dumps(_results("exp5", smoke=True)))
    text = summarize(sorted(EXPERIMENTS.glob("*.yaml")), tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert sum("not run yet" in r for r in rows) == 6
    exp3 = next(r for r in rows if "exp3" in r)
    assert "95.5% ± 0.5%" in exp3 and "97.5% ± 0.5%" in exp3 and "MISSED: below paper" in exp3
    assert "(smoke run only)" in next(r for r in rows if "exp5" in r)
    assert "exp3: cpu: 2 cores, fp32, settings *earlier*; wall time 12 s" in text  # nothing recorded: fp32, earlier


def test_summary_command_writes_readme(tmp_path, capsys):
    configs = tmp_path / "configs"
    configs.mkdir()
    shutil.copy(EXPERIMENTS / "exp3.yaml", configs)
    assert main(["summary", str(tmp_path), "--configs", str(configs)]) == 0
    assert (tmp_path / "README.md").read_text().count("not run yet") == 1
    assert main(["summary", str(tmp_path / "missing"), "--configs", str(configs)]) == 2
    assert main(["summary", str(tmp_path), "--configs", str(tmp_path / "none")]) == 2
    assert "no experiment files" in capsys.readouterr().err
