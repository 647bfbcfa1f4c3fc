"""examples/own-model: the reduced ResNet-18 and the transformer encoder, made multitask, trained
on small data; file round trips, sparse inference and ONNX parity of a converted task."""

import importlib
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
import torch

import rsn2
from rsn2 import TrainConfig
from rsn2.deploy import export_onnx
from rsn2.io import load_model, save_model
from tests.conftest import SHARED_DATA

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "own-model"
TINY = TrainConfig(batch_size=32, max_epochs=1, progress=False)


@pytest.fixture
def example(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))

    def load(name: str):
        sys.modules.pop(name, None)
        return importlib.import_module(name)

    return load


def _onnx_matches(net, task, x, tmp_path):
    path = tmp_path / f"{task}.onnx"
    export_onnx(net, task, path)
    session = ort.InferenceSession(str(path))
    probabilities = session.run(["probabilities"], {"input": x.numpy()})[0]
    torch.testing.assert_close(
        torch.from_numpy(probabilities), torch.softmax(net(x, task), dim=1), rtol=1e-5, atol=1e-5
    )


def test_the_resnet_trains_two_tasks_in_parallel_and_a_third_later(example, tmp_path):
    resnet = example("resnet")
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(400, 3, 32, 32, generator=gen), torch.randint(0, 10, (400,), generator=gen)
    data = {t: resnet.split(x, y, c, 48) for t, c in resnet.SPLITS.items()}
    # not nf=4: torch 2.13's channels_last backward of a 1x1 stride-2 convolution with fewer than 8 input
    # channels corrupts memory on an AVX2 EPYC (docs/decisions/channels-last-small-convolutions.md)
    net, unchanged = resnet.train(data, TINY, nf=8)
    assert unchanged == {"vehicles": True, "wild": True}
    assert rsn2.ownership_problems(net) == []
    assert {type(m).__name__ for m in net.body.modules()} >= {"MultitaskConv2d", "PerSubnetwork"}
    path = tmp_path / "resnet.safetensors"
    save_model(net, path)
    back = load_model(path, body=resnet.ReducedResNet18(8))
    probe = data["pets"].x[:8]
    for task in resnet.SPLITS:
        assert torch.equal(back(probe, task), net(probe, task))
        sparse = rsn2.TaskModel.from_network(back, task)
        torch.testing.assert_close(sparse(probe), net(probe, task), rtol=1e-5, atol=1e-5)
    _onnx_matches(net, "pets", probe, tmp_path)


def test_the_transformer_trains_a_second_text_task_later(example, tmp_path):
    transformer = example("transformer")
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(1, 60, (160, transformer.LENGTH), generator=gen)
    x[:, 100:] = 0  # padding
    data = {"sentiment": rsn2.TaskData(x, (x[:, 0] > 30).long()), "rating": rsn2.TaskData(x, x[:, 1] % 4)}
    encoder = transformer.TextEncoder(vocabulary=60, dim=16, heads=2, layers=1)
    net, unchanged = transformer.train(data, TINY, encoder)
    assert unchanged
    attention = net.body.encoder.layers[0].self_attn
    assert type(attention).__name__ == "MultitaskMultiheadAttention"
    path = tmp_path / "text.safetensors"
    save_model(net, path)
    back = load_model(path, body=transformer.TextEncoder(vocabulary=60, dim=16, heads=2, layers=1))
    probe = x[:8]
    for task in ("sentiment", "rating"):
        assert torch.equal(back(probe, task), net(probe, task))
        torch.testing.assert_close(
            rsn2.TaskModel.from_network(back, task)(probe), net(probe, task), rtol=1e-5, atol=1e-5
        )
    _onnx_matches(net, "rating", probe, tmp_path)


@pytest.mark.real_data
@pytest.mark.slow
def test_the_examples_run_as_documented_on_real_data(example, tmp_path, capsys):
    if not (SHARED_DATA / "imdb").is_dir() or not (SHARED_DATA / "cifar-10").is_dir():
        pytest.skip(f"needs IMDB and CIFAR-10 in {SHARED_DATA}")
    transformer = example("transformer")
    out = tmp_path / "text.safetensors"
    assert (
        transformer.main(
            [
                "--data-dir",
                str(SHARED_DATA),
                "--samples",
                "300",
                "--test-samples",
                "200",
                "--epochs",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "sentiment bit-identical after rating was trained: True" in printed
    assert load_model(out, body=transformer.build()).task_names == ["sentiment", "rating"]
    resnet = example("resnet")
    out = tmp_path / "resnet.safetensors"
    assert (
        resnet.main(
            [
                "--data-dir",
                str(SHARED_DATA),
                "--samples",
                "64",
                "--test-samples",
                "64",
                "--epochs",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "{'vehicles': True, 'wild': True}" in printed
    assert load_model(out, body=resnet.build()).task_names == ["vehicles", "wild", "pets"]


def test_the_resnet_trains_from_its_training_file(example, tmp_path, monkeypatch, capsys):
    """resnet.yaml names the user's module as its network: `rsn2 train` converts it, trains two tasks
    together and the third later, and a dense control per task; predict rebuilds the module with
    --factory."""
    from rsn2.cli.main import main

    resnet = example("resnet")
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(300, 3, 32, 32, generator=gen), torch.randint(0, 10, (300,), generator=gen)
    for task, classes in resnet.SPLITS.items():
        for part, n in (("train", 24), ("test", 6)):
            resnet.write_image_folders(tmp_path / "splits" / task / part, resnet.split(x, y, classes, n), task)
    text = (EXAMPLE / "resnet.yaml").read_text()
    text = text.replace(
        "training: {batch_size: 64, max_epochs: 20, patience: 5}", "training: {batch_size: 16, max_epochs: 1}"
    )
    (tmp_path / "resnet.yaml").write_text(text)
    (tmp_path / "resnet.py").write_text((EXAMPLE / "resnet.py").read_text())
    out = tmp_path / "resnet-file.safetensors"
    assert main(["train", str(tmp_path / "resnet.yaml"), "--out", str(out), "--controls"]) == 0
    printed = capsys.readouterr().out  # each task beside a dense control: a fresh module of its own
    assert all(f"{t} " in printed for t in resnet.SPLITS) and printed.count("dense control") == 3
    net = load_model(out, body=resnet.build())
    assert net.task_names == ["vehicles", "wild", "pets"] and net.frozen == {"vehicles", "wild", "pets"}
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(out), "splits/pets/test", "--task", "pets", "--factory", "resnet:build"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 1 + 6 and rows[1].split(",")[1] in ("cat", "dog", "horse")
