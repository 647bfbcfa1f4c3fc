"""The README's "Your own tasks" commands, run as written on examples/own-tasks/."""

import hashlib
import re
import shlex
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from rsn2 import TaskModel
from rsn2.cli.main import main
from rsn2.io import load_model
from tests.deploy.server_process import running_server
from tests.workflow.test_serving_doc import check_every_request_of_the_page

ROOT = Path(__file__).resolve().parents[2]


def _commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Your own tasks") :]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block, "the README's own-tasks section has no bash block"
    return [shlex.split(line) for line in block.group(1).splitlines() if line.startswith("rsn2 ")]


@pytest.mark.slow
def test_the_readme_walkthrough_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    commands = _commands()
    assert [c[1] for c in commands] == ["train", "add-task", "predict", "predict", "export", "serve"]
    for argv in commands[:-1]:
        if argv[1] == "add-task":
            before = hashlib.sha256(Path("own.safetensors").read_bytes()).hexdigest()
        assert main(argv[1:]) == 0, capsys.readouterr().err
        if argv[1] == "add-task":
            assert hashlib.sha256(Path("own.safetensors").read_bytes()).hexdigest() == before
    out = capsys.readouterr().out
    assert re.search(r"species +classification +test accuracy 0\.\d+, dense control 0\.\d+", out)
    assert re.search(r"progression +regression +test mse \d", out)
    old, new = load_model("own.safetensors"), load_model("own-plus.safetensors")
    assert new.task_names == ["species", "digit", "review", "progression"]
    for task in ("species", "digit", "review"):  # the earlier tasks answer bit for bit as before
        x = _probe(old, task)
        with torch.no_grad():
            assert torch.equal(old(x, task), new(x, task))
    rows = Path("digit-3.csv").read_text().splitlines()
    assert rows[0].startswith("sample,class,p_0,p_1")
    assert sum(r.split(",")[1] == "3" for r in rows[1:]) >= 0.8 * (len(rows) - 1)
    assert "setosa" in out and out.count("\n") > 150  # one row per iris sample
    session = ort.InferenceSession("progression.onnx", providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "features" and session.get_inputs()[0].shape[1:] == [10]
    row = np.array([[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]], dtype=np.float32)  # diabetes.csv's first
    (value,) = session.run(["value"], {"features": row})
    predicted = TaskModel.load("own-plus.safetensors", "progression").predict(row)["value"]
    np.testing.assert_allclose(value, predicted, rtol=1e-5)
    assert 25 <= float(value[0, 0]) <= 346  # in the target's units (its range in the file), not scaled to [0, 1]
    iris = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5]]  # the README's curl rows
    assert TaskModel.load("own-plus.safetensors", "species").predict(iris)["label"].tolist() == [
        "setosa",
        "versicolor",
        "virginica",
    ]
    with running_server(tmp_path / "own-plus.safetensors") as (base, _):  # the README's serve command
        check_every_request_of_the_page(base)


def _probe(network, task):
    spec = network.task_spec(task)
    if spec.takes_tokens:
        return torch.randint(0, int(spec.adapter[0].params["num_embeddings"]), (8, *spec.input_shape))
    return torch.rand(8, *spec.input_shape)
