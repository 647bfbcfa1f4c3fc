import json
import subprocess
import sys

import pytest

from rsn2.cli.main import main

DEMO_KEYS = {"tasks", "model_bytes", "dense_model_bytes", "controls_bytes", "ownership_problems"}
TASK_KEYS = {"name", "metric", "multitask", "control", "before_later_stages", "after_later_stages", "kept_fraction"}


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "demo.safetensors"
    out = subprocess.run(
        [sys.executable, "-m", "rsn2.cli.main", "demo", "--json", "--save", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout), path


@pytest.mark.slow
def test_demo_json_schema_and_claims(demo_report):
    report, path = demo_report
    assert DEMO_KEYS <= report.keys()
    assert [t["name"] for t in report["tasks"]] == ["digits", "wine", "diabetes"]
    for row in report["tasks"]:
        assert TASK_KEYS <= row.keys()
        assert 0.25 <= row["kept_fraction"] <= 0.35
    digits, wine, diabetes = report["tasks"]
    for row in (digits, wine):
        assert row["before_later_stages"] == row["after_later_stages"] == row["multitask"]
        assert row["metric"] == "accuracy" and row["multitask"] > 0.85
        assert row["control"] - row["multitask"] < 0.1
    assert diabetes["metric"] == "mse" and diabetes["before_later_stages"] is None
    assert report["ownership_problems"] == [] and report["earlier_tasks_unchanged"] is True
    assert report["model_bytes"] == path.stat().st_size
    assert report["model_bytes"] < report["controls_bytes"]
    assert report["model_bytes"] <= 1.15 * report["dense_model_bytes"]


@pytest.mark.slow
def test_demo_is_deterministic(demo_report):
    report, _ = demo_report
    again = subprocess.run(
        [sys.executable, "-m", "rsn2.cli.main", "demo", "--json"], capture_output=True, text=True, check=True
    )
    second = json.loads(again.stdout)
    assert second["tasks"] == report["tasks"]
    assert second["model_bytes"] == report["model_bytes"]


def test_demo_table_output(capsys, monkeypatch):
    import rsn2.experiments.demo as demo

    fake = {
        "seed": 0,
        "stages": [["a"], ["b"]],
        "tasks": [
            {
                "name": "a",
                "metric": "accuracy",
                "multitask": 0.9,
                "control": 0.91,
                "before_later_stages": 0.9,
                "after_later_stages": 0.9,
                "kept_fraction": 0.3,
            }
        ],
        "model_bytes": 110,
        "dense_model_bytes": 100,
        "controls_bytes": 200,
        "ownership_problems": [],
        "earlier_tasks_unchanged": True,
        "seconds": 1.0,
        "saved_to": None,
    }
    monkeypatch.setattr(demo, "run_demo", lambda **kw: fake)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "0.9000" in out and "1.10x" in out and "bit-identical after the later stage: True" in out


@pytest.mark.slow
def test_info_describes_and_verifies(demo_report, capsys):
    _, path = demo_report
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["verified"] is True and info["bytes"] == path.stat().st_size
    assert [t["name"] for t in info["tasks"]] == ["digits", "wine", "diabetes"]
    trunk0 = next(layer for layer in info["layers"] if layer["layer"] == "trunk.0")
    assert set(trunk0["owned"]) == {"digits", "wine", "diabetes"}
    assert trunk0["free"] + sum(trunk0["owned"].values()) == trunk0["positions"]
    assert main(["info", str(path)]) == 0
    assert "integrity verified" in capsys.readouterr().out


@pytest.mark.slow
def test_info_fails_on_tampered_file(demo_report, tmp_path, capsys):
    _, path = demo_report
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0xFF
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(blob))
    assert main(["info", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "error" in err and str(bad) in err


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "rsn2.cli.main", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in out.stdout and "info" in out.stdout
