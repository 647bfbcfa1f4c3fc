"""Devices: choosing one, training and evaluating on it; the CUDA tests run where a GPU is present."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch
from torch import nn

from rsn2.devices import cpus_in_use, describe, module_device, resolve_device
from rsn2.errors import SpecError
from rsn2.network import MultitaskNetwork
from rsn2.training import TrainConfig, evaluate, fit_stage, predict
from tests.helpers import conv_spec, mlp_spec, random_data

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
FAST = TrainConfig(batch_size=16, max_epochs=2, progress=False)


def test_resolve_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu0", "", "cuda:x"):
        with pytest.raises(SpecError, match="allowed: 'auto'"):
            resolve_device(bad)
    with pytest.raises(SpecError, match="not supported"):
        resolve_device("meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(SpecError, match="no CUDA device"):
        resolve_device("cuda")


def test_module_device_and_description():
    assert module_device(nn.ReLU()) == torch.device("cpu")
    assert module_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert describe(torch.device("cpu")).startswith("cpu: ")


def test_task_data_to_keeps_everything():
    net = MultitaskNetwork(mlp_spec())
    data = random_data(net, "t0", n=10)
    moved = data.to(torch.device("cpu"))
    assert moved.x is data.x and moved.y is data.y and moved.batch_size == data.batch_size


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("spec_fn", [mlp_spec, conv_spec], ids=["mlp", "conv"])
def test_two_stages_on_cuda_keep_earlier_tasks_identical(spec_fn, precision):
    torch.manual_seed(0)
    cuda = torch.device("cuda")
    net = MultitaskNetwork(spec_fn()).to(cuda)
    first, second = net.task_names
    data = {t: random_data(net, t, n=48, seed=i) for i, t in enumerate(net.task_names)}
    config = replace(FAST, precision=precision)
    fit_stage(net, {first: data[first]}, config)
    assert module_device(net).type == "cuda"
    before = predict(net, first, data[first].x)
    assert before.device.type == "cpu"  # outputs come back where the inputs were
    fit_stage(net, {second: data[second]}, config)
    assert torch.equal(before, predict(net, first, data[first].x))
    assert all(p.device.type == "cuda" for p in net.parameters())
    metrics = evaluate(net, second, data[second].x, data[second].y)
    assert set(metrics) == {"loss", "metric"}


@needs_cuda
def test_cuda_and_cpu_agree_on_a_trained_model():
    torch.manual_seed(0)
    net = MultitaskNetwork(mlp_spec()).to("cuda")
    data = {t: random_data(net, t, n=48, seed=i) for i, t in enumerate(net.task_names)}
    fit_stage(net, data, FAST)
    on_gpu = {t: predict(net, t, data[t].x) for t in data}
    net.cpu()
    for t in data:
        torch.testing.assert_close(predict(net, t, data[t].x), on_gpu[t], rtol=1e-4, atol=1e-5)


def _topology(root, cores_by_cpu):
    for cpu, core in cores_by_cpu.items():
        folder = root / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "physical_package_id").write_text("0\n")
        (folder / "core_id").write_text(f"{core}\n")


def test_cpus_in_use_counts_hyperthreads_of_one_core_once(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    _topology(tmp_path / "siblings", {0: 0, 1: 0, 2: 1})
    _topology(tmp_path / "separate", {0: 0, 1: 1})
    assert cpus_in_use(tmp_path / "siblings") == (2, 1)
    assert cpus_in_use(tmp_path / "separate") == (2, 2)
    assert cpus_in_use(tmp_path / "unreadable") == (2, 2)  # no topology: each CPU counts as a core


def test_cpus_in_use_on_this_machine_is_consistent():
    cpus, cores = cpus_in_use()
    assert 1 <= cores <= cpus <= (os.cpu_count() or cpus)
