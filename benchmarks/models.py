"""The models the benchmarks compare: rsn2 multitask networks and their plain PyTorch dense controls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from rsn2.layers import MultitaskConv2d, MultitaskLinear
from rsn2.network import MultitaskNetwork, NetworkSpec, TaskSpec
from rsn2.network.architectures import dense_head
from rsn2.network.registry import NETWORKS
from rsn2.selection import select_subnetworks


def fc_a(n_tasks: int, keep: float = 0.1, seed: int = 0) -> MultitaskNetwork:
    """FC-A with ``n_tasks`` 10-class tasks, each keeping ``keep`` of every trunk layer (RSN2 selection
    by gradient on a random sample batch; the heads stay whole)."""
    return _selected("fc-a", n_tasks, keep, seed)


def conv_a(n_tasks: int, keep: float = 0.2, seed: int = 0) -> MultitaskNetwork:
    """CONV-A (28 x 28 x 1 inputs) with ``n_tasks`` 10-class tasks keeping ``keep`` of every trunk layer."""
    return _selected("conv-a", n_tasks, keep, seed)


def conv_b(n_tasks: int, keep: float = 0.25, seed: int = 0) -> MultitaskNetwork:
    """CONV-B (32 x 32 x 3 inputs) with ``n_tasks`` 10-class tasks keeping ``keep`` of every trunk layer."""
    return _selected("conv-b", n_tasks, keep, seed)


@dataclass(frozen=True)
class ServedArchitecture:
    """A multitask architecture as the inference and serving benchmarks measure it."""

    build: Callable[[int, float], MultitaskNetwork]
    keep: float
    input_shape: tuple[int, ...]


SERVED = {
    "fc-a": ServedArchitecture(fc_a, 0.1, (784,)),
    "conv-a": ServedArchitecture(conv_a, 0.2, (1, 28, 28)),
    "conv-b": ServedArchitecture(conv_b, 0.25, (3, 32, 32)),
}
"""Architecture name -> builder, keep fraction per task and input shape."""


def _selected(name: str, n_tasks: int, keep: float, seed: int) -> MultitaskNetwork:
    """The named network with ``n_tasks`` 10-class tasks on its own input shape, selected by gradient."""
    trunk = NETWORKS[name].trunk()
    input_shape = trunk.input_shape
    tasks = [
        TaskSpec(f"task{i}", "classification", input_shape, head=dense_head(trunk.width, 10), keep_fraction=keep)
        for i in range(n_tasks)
    ]
    torch.manual_seed(seed)
    net = MultitaskNetwork(NetworkSpec(trunk.layers, tasks))
    gen = torch.Generator().manual_seed(seed)
    samples = {
        t: (torch.rand(64, *input_shape, generator=gen), torch.randint(0, 10, (64,), generator=gen))
        for t in net.task_names
    }
    select_subnetworks(net, net.task_names, samples, method="gradient")
    return net.eval()


def plain_control(network: MultitaskNetwork, task: str) -> nn.Sequential:
    """The task's architecture as ordinary dense PyTorch modules (``nn.Linear``/``nn.Conv2d``), with
    freshly initialised weights: what one would deploy today for this one task."""
    modules: list[nn.Module] = []
    for step in network.path(task):
        m = step.module
        if isinstance(m, MultitaskLinear):
            modules.append(nn.Linear(m.in_features, m.out_features, bias=m.has_bias))
        elif isinstance(m, MultitaskConv2d):
            modules.append(
                nn.Conv2d(
                    m.in_channels,
                    m.out_channels,
                    m.kernel_size,
                    stride=m.stride,
                    padding=m.padding,
                    dilation=m.dilation,
                    bias=m.has_bias,
                )
            )
        else:
            modules.append(m)
    return nn.Sequential(*modules).eval()


def plain_fc_a(outputs: int = 10) -> nn.Sequential:
    """FC-A as plain PyTorch modules, built without any multitask model (for memory measurements)."""
    layers: list[nn.Module] = [
        nn.Linear(s.params["in_features"], s.params["out_features"]) if s.kind == "linear" else nn.ReLU()
        for s in NETWORKS["fc-a"].trunk().layers
    ]
    return nn.Sequential(*layers, nn.Linear(NETWORKS["fc-a"].trunk().width, outputs))
