"""The rough edges a new user hit (issue #32): each one's fix, as the user meets it."""

import csv
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rsn2.cli.info import format_info, model_info
from rsn2.cli.main import main
from rsn2.errors import ConfigError, DataError, TaskError
from rsn2.io import atomic_write_bytes
from rsn2.workflow import load_train_file, predict_file, train_file
from rsn2.workflow.inputs import read_jsonl

ROOT = Path(__file__).resolve().parents[2]


def test_predict_reads_an_image_folder_laid_out_as_in_training(raw_model, tmp_path, capsys):
    folder = tmp_path / "new"
    for label in ("2", "8"):
        (folder / label).mkdir(parents=True)
        for image in sorted((raw_model.folder / "digits" / label).iterdir())[:2]:
            shutil.copy(image, folder / label / image.name)
    rows = predict_file(raw_model.path, "digit", folder).splitlines()
    assert len(rows) == 5 and [r.split(",")[0].split("/")[0] for r in rows[1:]] == ["2", "2", "8", "8"]
    empty = tmp_path / "empty"
    (empty / "sub" / "deeper").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no images .* in the folder or in its subfolders \(one level deep"):
        predict_file(raw_model.path, "digit", empty)


def test_a_broken_json_lines_file_names_the_files_line(tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_text('{"text": "fine", "label": 1}\n\n{"text": "bad" "label": 0}\n')
    with pytest.raises(DataError, match=r"reviews\.jsonl: line 3 is not valid JSON \(.*\); JSON Lines holds one"):
        read_jsonl(path, ["text", "label"])


def _config(tmp_path, **extra):
    (tmp_path / "v.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i * 2}\n" for i in range(20)))
    cfg = {
        "network": {"input_shape": [4], "layers": [{"kind": "linear", "in_features": 4, "out_features": 8}]},
        "tasks": {"v": {"kind": "regression", "data": {"csv": "v.csv", "target": "y"}}},
        "training": {"max_epochs": 1},
        **extra,
    }
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_an_unknown_training_key_lists_the_allowed_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"training: unknown key\(s\) \['epochs'\]; allowed: \[.*'max_epochs'"):
        load_train_file(_config(tmp_path, training={"epochs": 5}))
    with pytest.raises(ConfigError, match=r"selection: unknown key\(s\) \['way'\]; allowed: \[.*'method'"):
        load_train_file(_config(tmp_path, selection={"way": "random"}))


def test_a_target_that_is_not_a_number_names_the_file_the_column_and_the_sample(tmp_path):
    path = _config(tmp_path)
    (tmp_path / "v.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},{'n/a' if i == 4 else i}\n" for i in range(20)))
    with pytest.raises(DataError, match=r"v\.csv, target column 'y' \(.* part\): regression targets must be numbers"):
        train_file(load_train_file(path), tmp_path / "m.safetensors")
    with pytest.raises(DataError, match=r"holds 'n/a'"):
        train_file(load_train_file(path), tmp_path / "m.safetensors")


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_written_files_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "out.csv", b"x\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.csv").stat().st_mode) == 0o666 & ~umask


def test_models_onnx_and_predictions_are_readable_by_others_under_a_022_umask(raw_model, tmp_path):
    """As the user met it: a server running as another user could not read what rsn2 wrote (0600)."""
    out = tmp_path / "p.csv"
    script = (
        "import os, sys; os.umask(0o022); from rsn2.cli.main import main; "
        f"sys.exit(main(['predict', {str(raw_model.path)!r}, {str(raw_model.folder / 'iris.csv')!r}, "
        f"'--task', 'species', '--out', {str(out)!r}]) or main(['export', {str(raw_model.path)!r}, '--task', "
        f"'species', '--out', {str(tmp_path / 's.onnx')!r}]))"
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    for path in (out, tmp_path / "s.onnx"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_predict_out_says_what_it_wrote(raw_model, tmp_path, capsys):
    out = tmp_path / "p.csv"
    assert (
        main(
            ["predict", str(raw_model.path), str(raw_model.folder / "iris.csv"), "--task", "species", "--out", str(out)]
        )
        == 0
    )
    rows = out.read_text().count("\n") - 1
    assert capsys.readouterr().out.strip() == f"wrote {out}: {rows} prediction(s) of task 'species'"


def test_an_unreadable_image_says_so_without_a_python_object(raw_model, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DataError) as caught:
        predict_file(raw_model.path, "digit", bad)
    assert "broken.png is not a readable image (Pillow recognises no image format" in str(caught.value)
    assert "BytesIO" not in str(caught.value) and "0x" not in str(caught.value)


def test_add_task_prints_the_bit_identical_check(raw_model, tmp_path, capsys):
    (tmp_path / "more.csv").write_text("p,q,label\n" + "".join(f"{i % 5},{i % 7},{i % 2}\n" for i in range(40)))
    more = {
        "tasks": {"parity": {"kind": "classification", "data": {"csv": str(tmp_path / "more.csv"), "target": "label"}}},
        "training": {"max_epochs": 1},
    }
    (tmp_path / "add.yaml").write_text(yaml.safe_dump(more))
    assert (
        main(["add-task", str(raw_model.path), str(tmp_path / "add.yaml"), "--out", str(tmp_path / "n.safetensors")])
        == 0
    )
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("earlier task(s) "))
    tasks, rest = line.removeprefix("earlier task(s) ").split(": ", 1)
    assert sorted(tasks.split(", ")) == ["digit", "progression", "review", "species"]
    assert re.fullmatch(
        r"outputs bit-identical to .*raw\.safetensors's on seeded inputs \(checked before writing\)", rest
    )


def test_info_columns_stay_aligned_for_long_layer_names(raw_model):
    info = model_info(raw_model.path)
    assert any(len(layer["layer"]) >= 21 for layer in info["layers"])  # adapters.progression.0
    lines = [line for line in format_info(info).splitlines()[format_info(info).splitlines().index("layers:") + 1 :]]
    kind_columns = {line.index("MultitaskLinear") for line in lines}
    assert len(kind_columns) == 1, lines
    review = next(t for t in info["tasks"] if t["name"] == "review")
    assert review["served"]["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert review["served"]["preprocessing"]["token_rule"]["length"] == 8
    assert "takes text BYTES [-1] (text); answers probabilities FP32 [-1, 2], label BYTES [-1]" in format_info(info)


def test_the_walkthrough_outputs_are_ignored_by_git():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Your own tasks") :]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    written = re.findall(r"--out (\S+)", block)
    assert {"own.safetensors", "digit-3.csv", "progression.onnx"} <= set(written)
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    done = subprocess.run(["git", "check-ignore", *written], cwd=ROOT, capture_output=True, text=True)
    assert sorted(done.stdout.split()) == sorted(written)


def test_the_tests_read_the_data_folder_from_rsn2_data_as_the_cli_does(tmp_path):
    """The one variable: ``RSN2_DATA`` names the real datasets for the commands and the tests alike."""
    env = {**os.environ, "RSN2_DATA": str(tmp_path / "nowhere")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "tests/cli/test_data_cli.py::test_data_list_and_verify_real",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert "1 skipped" in done.stdout, done.stdout[-2000:]
    assert f"real datasets not found at {tmp_path / 'nowhere'} (set RSN2_DATA" in done.stdout


def test_training_keys_given_by_the_files_still_train(tmp_path):
    path = _config(tmp_path, training={"max_epochs": 1, "batch_size": 8, "seed": 3})
    done = train_file(load_train_file(path), tmp_path / "m.safetensors")
    assert json.loads(json.dumps(done))["tasks"]["v"]["kind"] == "regression"
    assert np.isfinite(done["tasks"]["v"]["multitask"])


def test_predict_without_a_task_infers_it_among_the_classification_tasks_that_read_the_input(raw_model, tmp_path):
    for path, task in ((raw_model.folder / "digits", "digit"), (raw_model.folder / "iris.csv", "species")):
        rows = list(csv.reader(io.StringIO(predict_file(raw_model.path, None, path))))
        named = list(csv.reader(io.StringIO(predict_file(raw_model.path, task, path))))
        assert rows[0] == ["sample", "task", "confidence", "class", "probability"]
        assert len(rows) == len(named) > 1
        assert {r[1] for r in rows[1:]} == {task} and {r[2] for r in rows[1:]} == {"1.0000"}  # the only reader
        assert [r[3] for r in rows[1:]] == [r[1] for r in named[1:]]
        assert [float(r[4]) for r in rows[1:]] == pytest.approx([max(map(float, r[2:])) for r in named[1:]], abs=1e-5)
    other = tmp_path / "notes.txt"
    other.write_text("nothing a task reads\n")
    with pytest.raises(
        DataError,
        match=r"no classification task .* takes .*notes\.txt.*digit: .*progression: a regression task.*species: ",
    ):
        predict_file(raw_model.path, None, other)
    with pytest.raises(TaskError, match=r"threshold must be in \[0, 1\]"):
        predict_file(raw_model.path, None, raw_model.folder / "iris.csv", threshold=2.0)


def test_the_predict_command_without_task_says_which_task_answered(raw_model, tmp_path, capsys):
    out = tmp_path / "auto.csv"
    assert main(["predict", str(raw_model.path), str(raw_model.folder / "iris.csv"), "--out", str(out)]) == 0
    assert "prediction(s) of tasks inferred per sample" in capsys.readouterr().out
    assert out.read_text().splitlines()[0] == "sample,task,confidence,class,probability"
    assert main(["predict", str(raw_model.path), str(raw_model.folder / "iris.csv"), "--threshold", "2"]) != 0
    assert "threshold must be in [0, 1], got 2.0" in capsys.readouterr().err
