"""The command line answers mistakes with one clear line, never a traceback, and keeps messages whole."""

from pathlib import Path

import yaml

from rsn2.cli.main import main

EXP3 = Path(__file__).resolve().parents[2] / "experiments" / "exp3.yaml"


def test_a_message_ending_in_a_quote_keeps_its_quote(tmp_path, capsys):
    cfg = {"network": {"kind": "fc-a"}, "tasks": {"t": {"kind": "ranking", "data": {"csv": "x.csv", "target": "y"}}}}
    (tmp_path / "x.csv").write_text("a,y\n1,2\n")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "t.yaml"), "--out", str(tmp_path / "m.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.rstrip().endswith("got 'ranking'"), err


def test_run_on_a_folder_or_a_non_utf8_file_is_one_line(tmp_path, capsys):
    assert main(["run", str(tmp_path), "--out", str(tmp_path / "out"), "--smoke"]) == 1
    err = capsys.readouterr().err
    assert "is a folder; give the path of an experiment file" in err and "Traceback" not in err
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(EXP3.read_bytes().replace(b"title:", b"title: caf\xe9"))
    assert main(["run", str(bad), "--out", str(tmp_path / "out"), "--smoke"]) == 1
    err = capsys.readouterr().err
    assert "is not UTF-8 text" in err and "save it as UTF-8" in err
    assert not (tmp_path / "out").exists()


def test_an_experiment_whose_tasks_can_never_fit_is_refused_before_any_data_or_folder(tmp_path, capsys):
    text = EXP3.read_text().replace("keep_fraction: 0.1", "keep_fraction: 0.6")
    (tmp_path / "over.yaml").write_text(text)
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "over.yaml"), "--out", str(out), "--data-dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert "the tasks do not fit in the network" in err and "can never hold" in err
    assert not out.exists()
