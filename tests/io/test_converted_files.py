"""Model files of converted user modules: round trips into a fresh instance, name and shape checks,
rsn2 info without the module, predict/export/serve with --factory, ONNX parity."""

import json
import textwrap

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import rsn2
from rsn2.cli.main import main
from rsn2.errors import ModelFileError
from rsn2.io import load_model, save_model
from rsn2.training import TaskData, TrainConfig, fit_stage
from tests.user_models import MODELS, NormMLP, inputs_for, tasks_for

FAST = TrainConfig(batch_size=16, max_epochs=1, progress=False)


def _trained(model: str, tmp_path, **convert):
    torch.manual_seed(0)
    net = rsn2.multitask(MODELS[model][0](), tasks_for(model), **convert)
    x, y = inputs_for(model)
    fit_stage(net, {t: TaskData(x, y) for t in net.task_names}, FAST)
    path = tmp_path / f"{model}.safetensors"
    save_model(net, path)
    return net, path, x


@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_converted_model_round_trips_into_a_fresh_instance(model, tmp_path):
    net, path, x = _trained(model, tmp_path)
    back = load_model(path, body=MODELS[model][0]())
    for task in net.task_names:
        assert torch.equal(back(x, task), net(x, task))
        sparse = rsn2.TaskModel.load(path, task, body=MODELS[model][0]())
        torch.testing.assert_close(sparse(x), net(x, task), rtol=1e-5, atol=1e-5)
    assert back.frozen == net.frozen == {"a", "b"}
    assert back.conversion == net.conversion


def test_a_subnetwork_shared_in_some_modules_round_trips_and_serves_sparse(tmp_path):
    shared = [rsn2.SharedSubnetwork("both", ["a", "b"], ["body.block"], 0.4)]
    net, path, x = _trained("resnet", tmp_path, shared=shared)
    back = load_model(path, body=MODELS["resnet"][0]())
    assert back.spec.shared == net.spec.shared
    for task in net.task_names:
        assert torch.equal(back(x, task), net(x, task))
        sparse = rsn2.TaskModel.load(path, task, body=MODELS["resnet"][0]())
        torch.testing.assert_close(sparse(x), net(x, task), rtol=1e-5, atol=1e-5)


def test_shared_frozen_and_dense_per_task_modules_round_trip(tmp_path):
    def build():
        torch.manual_seed(3)
        return nn.Sequential(nn.Linear(4, 6), nn.PReLU(), nn.Linear(6, 6), nn.PReLU())

    task = rsn2.TaskSpec("a", "classification", (4,), head=[rsn2.network.linear(6, 2)], keep_fraction=0.5)
    net = rsn2.multitask(build(), [task], shared_frozen=["1"], dense_per_task=["3"])
    x = torch.randn(16, 4)
    fit_stage(net, {"a": TaskData(x, torch.randint(0, 2, (16,)))}, FAST)
    save_model(net, tmp_path / "m.safetensors")
    back = load_model(tmp_path / "m.safetensors", body=build())
    assert torch.equal(back(x, "a"), net(x, "a"))


def test_loading_needs_the_module_and_refuses_another_architecture(tmp_path):
    _, path, _ = _trained("norms", tmp_path)
    with pytest.raises(ModelFileError, match=r"made from a tests\.user_models\.NormMLP module.*--factory"):
        load_model(path)
    with pytest.raises(ModelFileError, match=r"does not match the file|does not run|is float32"):
        load_model(path, body=MODELS["resnet"][0]())
    wider = MODELS["norms"][0]()
    wider.fc = nn.Linear(24, 8, bias=True)
    wider.fc.weight = nn.Parameter(torch.zeros(8, 24))
    assert load_model(path, body=wider)  # same names and shapes: loads
    other_kernel = MODELS["norms"][0]()
    other_kernel.conv = nn.Conv1d(2, 4, 5, padding=2)  # same output shape, another kernel
    with pytest.raises(
        ModelFileError, match=r"tensor 'body\.conv\.weight' is torch.float32 \(4, 2, 3\), expected .* \(4, 2, 5\)"
    ):
        load_model(path, body=other_kernel)
    with pytest.raises(
        ModelFileError, match=r"layers only in the file \['body.fc'\], only in the module \['body.dense'\]"
    ):
        load_model(path, body=_Renamed())


def test_info_reads_a_converted_model_without_its_module(tmp_path, capsys):
    _, path, _ = _trained("resnet", tmp_path)
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["body"]["class"] == "tests.user_models.TinyResNet"
    assert "body.bn" in info["body"]["per_subnetwork"]
    assert {layer["layer"] for layer in info["layers"]} >= {"body.stem", "body.block.conv1", "heads.a.0"}
    assert [t["subnetworks"] for t in info["tasks"]] == [["a"], ["b"]]
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # a flipped bit in a tensor: info verifies without the module too
    path.write_bytes(bytes(data))
    assert main(["info", str(path)]) == 1
    err = capsys.readouterr().err
    assert "checksum mismatch" in err or "differs from the recorded" in err


FACTORY = textwrap.dedent(
    """
    from tests.user_models import TinyEncoder

    def build():
        return TinyEncoder()

    def not_a_module():
        return 3
    """
)


def test_predict_and_export_take_the_users_factory(tmp_path, monkeypatch, capsys):
    net, path, x = _trained("encoder", tmp_path)
    (tmp_path / "encoder_factory.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", x[:5].numpy())
    assert main(["predict", str(path), "x.npy", "--task", "b"]) == 1
    assert "--factory" in capsys.readouterr().err
    assert main(["predict", str(path), "x.npy", "--task", "b", "--factory", "encoder_factory:not_a_module"]) == 1
    assert "not a torch.nn.Module" in capsys.readouterr().err
    assert main(["predict", str(path), "x.npy", "--task", "b", "--factory", "nowhere:build"]) == 1
    assert "cannot import 'nowhere'" in capsys.readouterr().err
    assert main(["predict", str(path), "x.npy", "--task", "b", "--factory", "encoder_factory:build"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    expected = net(x[:5], "b").argmax(dim=1).tolist()
    assert [int(r.split(",")[1]) for r in rows] == expected
    out = tmp_path / "b.onnx"
    assert main(["export", str(path), "--task", "b", "--out", str(out), "--factory", "encoder_factory:build"]) == 0
    session = ort.InferenceSession(str(out))
    probabilities = session.run(["probabilities"], {"input": x[:5].numpy()})[0]
    torch.testing.assert_close(
        torch.from_numpy(probabilities), torch.softmax(net(x[:5], "b"), dim=1), atol=1e-5, rtol=1e-5
    )


class _Renamed(NormMLP):
    """NormMLP with its linear layer under another name."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = self.fc
        del self.fc

    def forward(self, x):
        h = torch.relu(self.group(self.conv(x))).flatten(1)
        return torch.relu(self.batch_norm(self.layer_norm(self.dense(h))))
