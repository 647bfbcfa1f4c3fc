"""A tiny synthetic task stream and benchmark config for the continual tests (no dataset files)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from rsn2.continual.config import BenchmarkConfig, parse_benchmark_config
from rsn2.continual.streams import ContinualTask


def tiny_config(**overrides: Any) -> BenchmarkConfig:
    data = {
        "name": "tiny",
        "title": "tiny synthetic stream",
        "stream": {"kind": "split", "dataset": "mnist", "classes_per_task": 2},
        "network": {"kind": "mlp", "hidden": [16, 16]},
        "keep_fraction": 0.3,
        "training": {"batch_size": 16, "epochs": 2, "lr": 0.01},
        "methods": {
            "rsn2": {},
            "rsn2-select": {},
            "rsn2-all": {},
            "packnet": {"retrain_epochs": 1},
            "packnet-disjoint": {"retrain_epochs": 1},
            "ewc": {"lambda": 10.0, "fisher_samples": 16},
            "finetune": {},
            "joint": {},
            "stl": {},
        },
        "published": {"source": "nowhere", "acc": {"packnet": 50.0, "ewc": 40.0}},
    }
    return replace(parse_benchmark_config({**data, **overrides}))


def tiny_stream(n_tasks: int = 3, n: int = 96, features: int = 8, seed: int = 0) -> list[ContinualTask]:
    """Linearly separable 2-class tasks on 8 features, each along its own direction."""
    gen = torch.Generator().manual_seed(seed)
    tasks = []
    for i in range(n_tasks):
        direction = torch.randn(features, generator=gen)
        x = torch.randn(n, features, generator=gen)
        y = (x @ direction > 0).long()
        xt = torch.randn(n // 2, features, generator=gen)
        yt = (xt @ direction > 0).long()
        tasks.append(ContinualTask(f"t{i}", x, y, xt, yt, ["neg", "pos"]))
    return tasks
