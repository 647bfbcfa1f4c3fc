"""`rsn2 run` on an experiment whose network is the user's own nn.Module (`network: {module: ...}`):
trained, controlled, resumed and refused as the paper's architectures are; synthetic data, so it
runs everywhere."""

import json
from pathlib import Path

import pytest
import torch

import rsn2.experiments.runner as runner
import rsn2.training.loop as loop
from rsn2.cli.main import main
from rsn2.errors import ConfigError
from rsn2.experiments import load_config
from rsn2.experiments.build import build_network, build_spec
from rsn2.io import checksums, load_model

from .test_runner_resume import _synthetic

MODULE = """
from torch import nn


def bn_mlp():
    return nn.Sequential(nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU())
"""


def _experiment(folder: Path, **extra: str) -> Path:
    """An experiment file beside its own module (imported from the file's folder)."""
    (folder / "experiment_user_module.py").write_text(MODULE)
    lines = {
        "name": "mine",
        "title": "a user's module",
        "network": '{module: "experiment_user_module:bn_mlp", input_shape: [784]}',
        "tasks": "{digits: {dataset: mnist, keep_fraction: 0.3}, clothes: {dataset: fashion-mnist, keep_fraction: 0.3}}",  # noqa: E501
        "stages": "[[digits], [clothes]]",
        **extra,
    }
    path = folder / "mine.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in lines.items()))
    return path


def test_the_module_is_made_multitask_with_a_head_per_task_and_shared_groups_by_layer_kind(tmp_path):
    shared = "[{name: both, tasks: [digits, clothes], layers: dense, keep_fraction: 0.2}]"
    config = load_config(_experiment(tmp_path, stages="[[digits, clothes]]", shared=shared))
    assert config.architecture == "module" and config.network_name == "experiment_user_module:bn_mlp"
    net = build_network(config, build_spec(config))
    steps = {s.key: s.subnetwork for s in net.path("digits") if s.subnetwork is not None}
    assert steps == {"body.0": "both", "body.1": "digits", "body.3": "both", "heads.digits.0": "digits"}
    assert net.task_spec("clothes").head[0].params == {"in_features": 24, "out_features": 10, "bias": True}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"architecture": "fc-a"}, "architecture: is the old spelling"),
        ({"network": '{module: "experiment_user_module:bn_mlp", input_shape: [784], kind: fc-a}'}, "exactly one of"),
        ({"network": '{module: "experiment_user_module"}'}, r"missing key\(s\) \['input_shape'\]"),
        (
            {"network": '{module: "experiment_user_module:bn_mlp", input_shape: [1, 28, 28]}'},
            r"does not take inputs of shape \[1, 28, 28\]",
        ),
        ({"network": '{module: "experiment_user_module:bn_mlp", input_shape: [true]}'}, "positive integers"),
        ({"network": '{module: "experiment_user_module:nothing", input_shape: [784]}'}, "has no attribute"),
        (
            {"tasks": "{digits: {dataset: mnist, keep_fraction: 0.3}, clothes: {dataset: boston, keep_fraction: 0.3}}"},
            r"boston samples have shape \[13\]",
        ),
    ],
)
def test_a_module_experiment_that_cannot_run_is_refused_on_load_naming_the_problem(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_experiment(tmp_path, **extra))


@pytest.mark.slow
def test_a_module_experiment_runs_its_controls_and_resumes_as_if_uninterrupted(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "load_datasets", _synthetic)
    path = _experiment(tmp_path)

    def args(out):
        return ["run", str(path), "--out", str(out), "--smoke", "--data-dir", str(tmp_path / "no-data")]

    assert main(args(tmp_path / "whole")) == 0
    out = tmp_path / "interrupted"
    real_save = loop.save_stage_checkpoint

    def save_then_stop(at, *a, **k):
        real_save(at, *a, **k)
        if Path(at).name.startswith("stage1."):
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_stage_checkpoint", save_then_stop)
    assert main(args(out)) == 130
    monkeypatch.setattr(loop, "save_stage_checkpoint", real_save)
    assert main(args(out)) == 0  # stage 0 comes back from its file, loaded into a fresh module
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["tasks"] == whole["tasks"] and resumed["architecture"] == "experiment_user_module:bn_mlp"
    assert {"multitask", "control"} <= whole["tasks"]["digits"].keys()
    module = __import__("experiment_user_module").bn_mlp
    a = load_model(out / "model.safetensors", body=module())
    b = load_model(tmp_path / "whole" / "model.safetensors", body=module())
    assert checksums(a) == checksums(b)
    torch.manual_seed(0)
    x = torch.rand(4, 784)
    assert torch.equal(a(x, "digits"), b(x, "digits"))
