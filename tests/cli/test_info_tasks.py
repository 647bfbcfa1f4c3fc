"""`rsn2 info --json` tells a client how to build a request for every task."""

import json

import pytest
import torch

from rsn2.cli.main import main
from rsn2.errors import SpecError
from rsn2.io import load_model, save_model
from rsn2.network import MultitaskNetwork, NetworkSpec, TaskSpec, embedding, flatten, linear, relu
from rsn2.selection import select_subnetworks


def _spec():
    trunk = (linear(12, 16), relu())
    tasks = (
        TaskSpec("colour", "classification", (12,), head=[linear(16, 3)], classes=["red", "green", "blue"]),
        TaskSpec("price", "regression", (12,), head=[linear(16, 1)]),
        TaskSpec("review", "classification", (3,), head=[linear(16, 2)], adapter=[embedding(50, 4), flatten()]),
    )
    return NetworkSpec(trunk, tasks)


def test_info_lists_input_shape_dtype_outputs_and_classes(tmp_path, capsys):
    torch.manual_seed(0)
    net = MultitaskNetwork(_spec())
    select_subnetworks(net, net.task_names, method="random")
    path = tmp_path / "m.safetensors"
    save_model(net, path)
    assert load_model(path).task_spec("colour").classes == ("red", "green", "blue")
    assert main(["info", str(path), "--json"]) == 0
    tasks = {t["name"]: t for t in json.loads(capsys.readouterr().out)["tasks"]}
    assert {k: tasks["colour"][k] for k in ("input_shape", "input_dtype", "outputs", "classes")} == {
        "input_shape": [12],
        "input_dtype": "FP32",
        "outputs": 3,
        "classes": ["red", "green", "blue"],
    }
    assert (tasks["price"]["outputs"], tasks["price"]["classes"]) == (1, None)
    assert (tasks["review"]["input_shape"], tasks["review"]["input_dtype"]) == ([3], "INT64")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"classes": ["a", "b"]}, "2 class names for 3 outputs"),
        ({"classes": ["a", "a", "b"]}, "distinct non-empty strings"),
        ({"classes": "abc"}, "must be a list of names"),
        ({"kind": "regression", "classes": ["a", "b", "c"]}, "only classification tasks have classes"),
    ],
)
def test_bad_class_names_are_refused(kwargs, message):
    args = {"name": "t", "kind": "classification", "input_shape": (4,), "head": [linear(4, 3)]} | kwargs
    with pytest.raises(SpecError, match=message):
        TaskSpec(**args)
