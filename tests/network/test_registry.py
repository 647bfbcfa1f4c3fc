"""The registry of named networks and the one spelling of ``network:`` that every file kind reads."""

from pathlib import Path

import pytest
import torch
import yaml

from rsn2.errors import ConfigError, SpecError
from rsn2.experiments.build import build_spec
from rsn2.experiments.config import parse_config
from rsn2.network.build import build_layer, push_sample
from rsn2.network.registry import NETWORKS, parse_network

ROOT = Path(__file__).resolve().parents[2]


def _width(layers, shape):
    return push_sample(((str(i), build_layer(s)) for i, s in enumerate(layers)), torch.zeros((1, *shape))).shape[1]


@pytest.mark.parametrize(
    ("name", "shape"),
    [("fc-a", None), ("conv-a", None), ("conv-b", None), ("mlp", None), ("conv-a", (3, 32, 32)), ("mlp", (20,))],
)
def test_a_named_trunk_outputs_the_width_it_states_for_the_shape_it_is_built_for(name, shape):
    trunk = NETWORKS[name].trunk(shape)
    assert trunk.input_shape == (shape or NETWORKS[name].input_shape)
    assert _width(trunk.layers, trunk.input_shape) == trunk.width


def test_a_trunk_refuses_samples_it_cannot_read_and_options_it_does_not_take():
    with pytest.raises(SpecError, match=r"fc-a reads flat \(D,\) vectors, got samples of shape \[1, 28, 28\]"):
        NETWORKS["fc-a"].trunk((1, 28, 28))
    with pytest.raises(SpecError, match=r"conv-b reads square \(C, S, S\) images, got samples of shape \[784\]"):
        NETWORKS["conv-b"].trunk((784,))
    with pytest.raises(SpecError, match=r"unknown key\(s\) \['hidden'\]"):
        NETWORKS["conv-a"].trunk(hidden=(3,))
    assert NETWORKS["mlp"].trunk(hidden=(7, 5)).width == 5


@pytest.mark.parametrize(
    "raw",
    [
        {"kind": "mlp", "hidden": [30, 20]},
        {"kind": "conv-b"},
        {"module": "pkg.mod:make", "input_shape": [3, 32, 32]},
        {"layers": [{"kind": "linear", "in_features": 4, "out_features": 2}], "input_shape": [4]},
    ],
)
def test_a_network_mapping_reads_back_from_what_it_writes(raw):
    choice = parse_network(raw)
    assert parse_network(choice.to_dict()) == choice
    assert choice.flat == (raw.get("kind") == "mlp" or len(raw.get("input_shape", [0, 0])) == 1)


def test_every_shipped_file_names_its_network_the_one_way():
    files = [*ROOT.glob("experiments/**/*.yaml"), *ROOT.glob("benchmarks/cl/*.yaml"), *ROOT.glob("examples/**/*.yaml")]
    assert len(files) > 40
    for path in files:
        raw = yaml.safe_load(path.read_text())
        assert "architecture" not in raw, path
        if "network" in raw:
            parse_network(raw["network"], str(path))


def test_an_experiment_on_an_mlp_enters_text_tasks_at_the_first_layers_width():
    config = parse_config(
        {
            "name": "mlp",
            "title": "t",
            "network": {"kind": "mlp", "hidden": [64, 32]},
            "tasks": {
                "digits": {"dataset": "mnist", "keep_fraction": 0.3},
                "text": {"dataset": "imdb", "keep_fraction": 0.3},
            },
            "stages": [["digits"], ["text"]],
        }
    )
    spec = build_spec(config)
    text = next(t for t in spec.tasks if t.name == "text")
    assert text.adapter[-2].params["out_features"] == 64 and text.head[0].params["in_features"] == 32
    on_conv_b = {"name": "x", "title": "t", "network": {"kind": "conv-b"}, "stages": [["d"]]}
    on_conv_b["tasks"] = {"d": {"dataset": "mnist", "keep_fraction": 0.3}}
    with pytest.raises(ConfigError, match="dataset 'mnist' is not supported on conv-b"):
        build_spec(parse_config(on_conv_b))
