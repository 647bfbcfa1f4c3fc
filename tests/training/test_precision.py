"""Training precision and memory format: what "auto" picks, and that the settings act."""

import dataclasses

import pytest
import torch

from rsn2.errors import SpecError
from rsn2.experiments import parse_config
from rsn2.network import MultitaskNetwork, NetworkSpec, TaskSpec, conv2d, flatten, linear
from rsn2.selection import select_subnetworks
from rsn2.training import TrainConfig, fit_stage, train_step
from rsn2.training import precision as precision_module
from rsn2.training.precision import cpu_features, resolve_channels_last, resolve_precision
from tests.helpers import conv_spec, mlp_spec, random_data

FAST = TrainConfig(batch_size=16, max_epochs=2, patience=5, progress=False)
CPU = torch.device("cpu")


def test_cpu_features_are_booleans_for_every_probe():
    features = cpu_features()
    assert set(features) == {"avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx"}
    assert all(isinstance(v, bool) for v in features.values())


@pytest.mark.parametrize(("bf16_units", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_precision_follows_the_cpus_bf16_units(monkeypatch, bf16_units, expected):
    fake = dict.fromkeys(("avx2", "avx512", "avx512_vnni", "amx"), False) | {"avx512_bf16": bf16_units}
    monkeypatch.setattr(precision_module, "cpu_features", lambda: fake)
    assert resolve_precision("auto", CPU) == expected
    assert resolve_precision("fp32", CPU) == "fp32"  # an explicit choice is kept whatever the CPU
    assert resolve_precision("bf16", CPU) == "bf16"


def test_auto_precision_on_cuda_keeps_fully_connected_networks_in_fp32(monkeypatch):
    """bf16 measured slower for FC-A's step on two GPUs, faster for the conv networks' (docs/performance.md)."""
    monkeypatch.setattr(precision_module, "has_bf16_units", lambda device: True)
    cuda = torch.device("cuda")  # only its type is read: no GPU needed
    mlp, conv = MultitaskNetwork(mlp_spec()), MultitaskNetwork(conv_spec())
    assert resolve_precision("auto", cuda, mlp) == "fp32"
    assert resolve_precision("auto", cuda, mlp_spec()) == "fp32"  # a spec answers as its network does
    assert resolve_precision("auto", cuda, conv) == "bf16" and resolve_precision("auto", cuda, conv_spec()) == "bf16"
    assert resolve_precision("auto", cuda) == "bf16"  # no network: the device's answer
    assert resolve_precision("auto", CPU, mlp) == "bf16"  # on a CPU with bf16 units FC-A gains too
    assert resolve_precision("bf16", cuda, mlp) == "bf16"  # an explicit choice is kept


def test_spec_has_convolutions_looks_at_trunk_adapters_and_heads():
    assert conv_spec().has_convolutions and not mlp_spec().has_convolutions
    adapter = (conv2d(1, 1, 1), flatten())  # (1, 2, 4) images into the MLP trunk's 8 features
    image_task = TaskSpec("img", "classification", (1, 2, 4), head=[linear(16, 3)], adapter=adapter)
    with_adapter = NetworkSpec(mlp_spec().trunk, [image_task])
    assert with_adapter.has_convolutions
    assert resolve_channels_last("auto", MultitaskNetwork(with_adapter))  # the module answers alike


def test_unknown_precision_and_memory_format_are_refused():
    with pytest.raises(SpecError, match=r"precision must be one of \('auto', 'fp32', 'bf16'\), got 'fp16'"):
        TrainConfig(precision="fp16")
    with pytest.raises(SpecError, match="memory_format must be one of"):
        TrainConfig(memory_format="nhwc")
    with pytest.raises(SpecError, match="precision must be one of"):
        resolve_precision("half", CPU)


def test_auto_memory_format_is_channels_last_only_for_conv_networks():
    assert resolve_channels_last("auto", MultitaskNetwork(conv_spec()))
    assert not resolve_channels_last("auto", MultitaskNetwork(mlp_spec()))
    assert not resolve_channels_last("contiguous", MultitaskNetwork(conv_spec()))


def test_bf16_step_computes_in_bf16_and_keeps_fp32_parameters():
    torch.manual_seed(0)
    net = MultitaskNetwork(conv_spec())
    first = random_data(net, "img")
    select_subnetworks(net, ["img"], {"img": (first.x[:32], first.y[:32])})  # selected, not frozen
    net.train()
    data = random_data(net, "img", seed=3)
    batch = {"img": (data.x, data.y)}
    no_step = torch.optim.SGD([p for p in net.parameters()], lr=0.0)
    fp32 = train_step(net, batch, no_step, "fp32")["img"]
    bf16 = train_step(net, batch, no_step, "bf16")["img"]
    assert fp32 != bf16  # bf16 rounding shows in the loss ...
    assert bf16 == pytest.approx(fp32, rel=2e-2)  # ... and stays close to it
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_stage_records_its_numerics_and_leaves_the_network_contiguous():
    torch.manual_seed(0)
    net = MultitaskNetwork(conv_spec())
    config = dataclasses.replace(FAST, precision="bf16", memory_format="channels_last")
    result = fit_stage(net, {"img": random_data(net, "img")}, config)
    assert (result.precision, result.channels_last) == ("bf16", True)
    assert all(p.is_contiguous() for p in net.parameters())
    assert all(b.is_contiguous() for b in net.buffers())


def test_experiment_files_take_precision_and_memory_format():
    config = parse_config(
        {
            "name": "x",
            "title": "x",
            "network": {"kind": "fc-a"},
            "tasks": {"mnist": {"dataset": "mnist", "keep_fraction": 0.1}},
            "stages": [["mnist"]],
            "training": {"precision": "bf16", "memory_format": "contiguous"},
        }
    )
    train = config.train_config()
    assert (train.precision, train.memory_format) == ("bf16", "contiguous")
