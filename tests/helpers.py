"""Small networks and data shared by the tests."""

from __future__ import annotations

import torch

from rsn2.network import MultitaskNetwork, NetworkSpec, TaskSpec, conv2d, flatten, linear, maxpool2d, relu
from rsn2.training import TaskData


def mlp_spec(n_tasks: int = 2, width: int = 16, keep: float = 0.3, in_features: int = 8) -> NetworkSpec:
    """A 3-layer MLP trunk with ``n_tasks`` classification tasks named t0, t1, ..."""
    trunk = (linear(in_features, width), relu(), linear(width, width), relu(), linear(width, width), relu())
    tasks = tuple(
        TaskSpec(f"t{i}", "classification", (in_features,), head=[linear(width, 3 + i)], keep_fraction=keep)
        for i in range(n_tasks)
    )
    return NetworkSpec(trunk, tasks)


def conv_spec(keep: float = 0.3) -> NetworkSpec:
    """A small conv trunk; ``img`` is 1x8x8 classification, ``rgb`` enters with its own first conv."""
    trunk = (
        conv2d(1, 4, 3, padding=1),
        relu(),
        conv2d(4, 4, 3, stride=2, dilation=1),
        relu(),
        maxpool2d(2),
        flatten(),
        linear(4, 8),
        relu(),
    )
    tasks = (
        TaskSpec("img", "classification", (1, 8, 8), head=[linear(8, 5)], keep_fraction=keep),
        TaskSpec(
            "rgb",
            "regression",
            (3, 8, 8),
            head=[linear(8, 1)],
            adapter=[conv2d(3, 4, 3, padding=1)],
            enter_at=1,
            keep_fraction=keep,
        ),
    )
    return NetworkSpec(trunk, tasks)


def random_data(network: MultitaskNetwork, task: str, n: int = 64, seed: int = 0) -> TaskData:
    """Random inputs and targets fitting ``task``'s input shape and head."""
    gen = torch.Generator().manual_seed(seed)
    spec = network.task_spec(task)
    x = torch.rand((n, *spec.input_shape), generator=gen)
    outputs = spec.head[-1].params["out_features"]
    if spec.kind == "classification":
        y = torch.randint(0, outputs, (n,), generator=gen)
    else:
        y = torch.rand((n,) if outputs == 1 else (n, outputs), generator=gen)
    return TaskData(x, y)


def snapshot(network: MultitaskNetwork) -> dict[str, torch.Tensor]:
    """A deep copy of every parameter and buffer."""
    return {k: v.detach().clone() for k, v in network.state_dict().items() if isinstance(v, torch.Tensor)}


def run_python(script: str, **env: str | None) -> str:
    """Run ``script`` (dedented) in a fresh interpreter with ``env`` changed (None: removed); its stdout."""
    import os
    import subprocess
    import sys
    import textwrap

    child = {k: v for k, v in os.environ.items() if k not in env}
    child |= {k: v for k, v in env.items() if v is not None}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, env=child, check=True
    )
    return done.stdout.strip()
