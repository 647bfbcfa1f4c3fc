"""Model file bytes: a multitask FC-A model against one dense FC-A model, both saved by rsn2."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from benchmarks.models import fc_a
from rsn2.io import save_model
from rsn2.network.dense_control import dense_control


def model_bytes(task_counts: tuple[int, ...]) -> list[dict[str, Any]]:
    """Bytes of the FC-A model file with t tasks (10% kept each) vs one dense FC-A model file."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_tasks in task_counts:
            net = fc_a(n_tasks, 0.1)
            multi = save_model(net, Path(tmp) / "multi.safetensors")
            dense = save_model(dense_control(net.spec, "task0"), Path(tmp) / "dense.safetensors")
            rows.append(
                {
                    "tasks": n_tasks,
                    "model_bytes": multi,
                    "dense_bytes": dense,
                    "ratio": multi / dense,
                    "separate_models_bytes": n_tasks * dense,
                }
            )
    return rows
