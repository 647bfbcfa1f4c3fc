"""`rsn2 export`: one task as ONNX, its weights only, equal to rsn2 in ONNX Runtime, or nothing written."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

import rsn2.deploy.export as export_module
from rsn2.cli.main import main
from rsn2.deploy import export_onnx, sample_inputs
from rsn2.errors import ExportError, SpecError
from rsn2.inference import TaskModel
from rsn2.io import save_model
from rsn2.network import MultitaskNetwork, NetworkSpec, TaskSpec
from rsn2.network.spec import linear, relu
from rsn2.selection import select_subnetworks
from rsn2.training import TrainConfig, fit_stage
from tests.cli.test_info_tasks import _spec
from tests.deploy.test_server import assert_answers, expected
from tests.helpers import conv_spec, random_data


@pytest.fixture(scope="module")
def trained():
    """A small conv model (one task enters through its own conv adapter), trained one stage."""
    torch.manual_seed(0)
    net = MultitaskNetwork(conv_spec())
    data = {t: random_data(net, t, n=64, seed=i) for i, t in enumerate(net.task_names)}
    fit_stage(net, data, TrainConfig(batch_size=16, max_epochs=1, progress=False))
    return net


@pytest.mark.parametrize("task", ["img", "rgb"])
def test_onnx_runtime_equals_rsn2_at_any_batch_size(trained, task, tmp_path):
    path = tmp_path / f"{task}.onnx"
    report = export_onnx(trained, task, path)
    assert report.path == path and report.bytes == path.stat().st_size and report.max_abs_diff <= 1e-5
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), outs = session.get_inputs(), session.get_outputs()
    assert inp.name == "input" and not isinstance(inp.shape[0], int)  # dynamic batch
    want_outputs = (
        [("value", "tensor(float)")]
        if trained.task_spec(task).kind == "regression"
        else [
            ("probabilities", "tensor(float)"),
            ("label", "tensor(string)"),
        ]
    )
    assert [(o.name, o.type) for o in outs] == want_outputs
    for n in (1, 5, 33):
        x = sample_inputs(trained, task, n, seed=100 + n)
        runs = session.run(None, {"input": x.numpy()})
        got = {o.name: r.astype(object) if o.type == "tensor(string)" else r for o, r in zip(outs, runs, strict=True)}
        assert_answers(got, expected(trained, x, task))


def test_the_file_holds_the_tasks_weights_only(trained, tmp_path):
    path = tmp_path / "img.onnx"
    export_onnx(trained, "img", path)
    floats = [t for t in onnx.load(str(path)).graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    stored = sum(int(np.count_nonzero(numpy_helper.to_array(t))) for t in floats)
    own = sum(
        layer.owned_count(step.subnetwork)
        for step in trained.path("img")
        if (layer := step.module) is not None and step.subnetwork is not None
    )
    biases = sum(step.module.bias_features for step in trained.path("img") if step.subnetwork is not None)
    everything = sum(layer.weight.numel() for _, layer in trained.multitask_layers())
    assert own <= stored <= own + biases + 64  # + a few shape constants
    assert stored < everything / 2


def test_token_tasks_export_with_int64_inputs(tmp_path):
    torch.manual_seed(0)
    net = MultitaskNetwork(_spec())
    select_subnetworks(net, net.task_names, method="random")
    report = export_onnx(net, "review", tmp_path / "review.onnx")
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(int64)"


def test_a_mismatch_writes_nothing(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "TOLERANCE", -1.0)  # nothing can match
    path = tmp_path / "img.onnx"
    with pytest.raises(ExportError, match=r"differs from rsn2 by .* nothing was written"):
        export_onnx(trained, "img", path)
    assert list(tmp_path.iterdir()) == []


def test_cli_exports_and_refuses_clearly(trained, tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    save_model(trained, model)
    out = tmp_path / "rgb.onnx"
    assert main(["export", str(model), "--task", "rgb", "--format", "onnx", "--out", str(out)]) == 0
    assert out.is_file() and "ONNX Runtime matches rsn2" in capsys.readouterr().out
    assert main(["export", str(model), "--task", "nope", "--out", str(tmp_path / "x.onnx")]) == 1
    assert "unknown task 'nope'" in capsys.readouterr().err
    assert main(["export", str(model), "--task", "rgb", "--out", str(tmp_path / "missing" / "x.onnx")]) == 1
    assert "existing folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "rgb.onnx"]


def test_sparse_weights_take_a_fraction_of_the_dense_file(tmp_path):
    """At 10% kept the file holds the nonzeros and a bit per position: well under a third of the dense
    export; ONNX Runtime rebuilds the same weights (the export's own check compares the answers)."""
    torch.manual_seed(0)
    spec = NetworkSpec(
        trunk=[linear(64, 256), relu(), linear(256, 256), relu()],
        tasks=[TaskSpec("a", "classification", (64,), head=[linear(256, 4)], keep_fraction=0.1)],
    )
    net = MultitaskNetwork(spec)
    select_subnetworks(net, ["a"], method="random")
    packed = export_onnx(net, "a", tmp_path / "packed.onnx")
    dense = export_onnx(net, "a", tmp_path / "dense.onnx", packed=False)
    assert packed.bytes < dense.bytes / 4
    x = sample_inputs(net, "a", 9, seed=3).numpy()
    runs = [
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})
        for p in (packed.path, dense.path)
    ]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])


def test_bfloat16_values_halve_the_stored_weights_and_answer_as_the_rounded_task_model(tmp_path):
    """The kernels rounded to bfloat16, stored in 2 bytes a value (packed and dense initializers) and
    widened in the graph: ONNX Runtime gives the rounded task model's answers, close to float32's."""
    torch.manual_seed(0)
    spec = NetworkSpec(
        trunk=[linear(64, 256), relu(), linear(256, 256), relu()],
        tasks=[TaskSpec("a", "classification", (64,), head=[linear(256, 8)], keep_fraction=0.1)],
    )
    net = MultitaskNetwork(spec)
    select_subnetworks(net, ["a"], method="random")
    full = export_onnx(net, "a", tmp_path / "full.onnx")
    half = export_onnx(net, "a", tmp_path / "half.onnx", values="bfloat16")
    assert half.max_abs_diff <= 1e-5 and half.bytes < 0.7 * full.bytes
    inits = onnx.load(str(half.path)).graph.initializer
    halved = {t.name for t in inits if t.data_type == onnx.TensorProto.BFLOAT16}
    assert any(n.endswith("__values_bf16") for n in halved)  # the packed trunk kernels
    assert any(n.endswith("__bf16") for n in halved)  # the dense head
    x = sample_inputs(net, "a", 9, seed=3)
    session = ort.InferenceSession(str(half.path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    rounded = TaskModel.from_network(net, "a", values="bfloat16")
    np.testing.assert_allclose(got, torch.softmax(rounded(x), 1).numpy(), rtol=1e-5, atol=1e-6)
    exact = torch.softmax(net(x, "a"), 1).detach().numpy()
    assert 0 < np.abs(got - exact).max() < 1e-2
    with pytest.raises(SpecError, match="packed values must be one of"):
        export_onnx(net, "a", tmp_path / "x.onnx", values="int8")
