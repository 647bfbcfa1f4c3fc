"""Accuracy of every task of every experiment's saved model with its values held as bfloat16, against float32.

Usage::

    python -m benchmarks.value_precision [--results docs/results] [--data-dir ../shared/data]
        [--out docs/performance/value-precision.md]

For each experiment folder ``<results>/<name>`` whose model file (``model.safetensors``, the seed-0
multitask model) was kept and whose experiment file is ``experiments/<name>.yaml``, every task runs
on its whole test set as ``rsn2 serve`` runs it: a :class:`~rsn2.inference.TaskModel` under the
default policy, once with float32 values and once with ``values="bfloat16"`` (what ``rsn2 serve
--values bfloat16`` holds). Reported per task: the test metric both ways (accuracy in percent, or
MSE), the change (bfloat16 minus float32, in points for accuracy), the share of test samples whose
predicted class changed, the largest output difference, and the bytes of the task's weights both
ways (``TaskModel.nbytes``). Folders without a model file are listed as such.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.tables import machine_line, markdown_table, print_and_write
from rsn2.experiments.config import load_config
from rsn2.experiments.load_tasks import load_datasets
from rsn2.inference import TaskModel
from rsn2.io import load_model
from rsn2.network.task_kinds import task_kind

TARGET_POINTS = 0.1
"""Most accuracy change, in points, that bfloat16 values may cost a task."""

BATCH = 512
"""Test samples per call (the fused runs take them in slices)."""

TABLE_KEYS = ["experiment", "task", "metric", "float32", "bfloat16", "change", "answers_changed_pct"]
TABLE_KEYS += ["max_abs_out_diff", "float32_KB", "bfloat16_KB"]
"""Columns of the table."""


def _outputs(model: TaskModel, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(x[i : i + BATCH]) for i in range(0, len(x), BATCH)])


def task_rows(name: str, model_file: Path, data_dir: str | None, smoke: bool = False) -> list[dict[str, Any]]:
    """One row per task of experiment ``name``'s saved model (see the module docstring); ``smoke``:
    the first 128 test samples of each task only."""
    config = load_config(Path("experiments") / f"{name}.yaml")
    network = load_model(model_file).eval()
    data = load_datasets(config, data_dir, smoke=smoke)
    rows = []
    for task in network.task_names:
        if task not in data or not network.is_selected(task):
            continue
        kind = task_kind(network.task_spec(task).kind)
        d = data[task]
        full = TaskModel.from_network(network, task)
        half = TaskModel.from_network(network, task, values="bfloat16")
        with torch.inference_mode():
            a, b = _outputs(full, d.x_test), _outputs(half, d.x_test)
        scale = 100.0 if kind.metric == "accuracy" else 1.0
        m32, m16 = kind.score(a, d.y_test) * scale, kind.score(b, d.y_test) * scale
        changed = float((a.argmax(1) != b.argmax(1)).float().mean()) * 100 if kind.metric == "accuracy" else None
        rows.append(
            {
                "experiment": name,
                "task": task,
                "metric": kind.metric + (" %" if scale == 100.0 else ""),
                "float32": m32,
                "bfloat16": m16,
                "change": m16 - m32,
                "answers_changed_pct": changed,
                "max_abs_out_diff": float((a - b).abs().max()),
                "float32_KB": full.nbytes / 1024,
                "bfloat16_KB": half.nbytes / 1024,
            }
        )
    return rows


def run(
    results: Path, data_dir: str | None, names: list[str] | None = None, smoke: bool = False
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows for every experiment folder with a model file (``names``: these experiments only); the
    names of those without one."""
    rows: list[dict[str, Any]] = []
    missing = []
    for config_file in sorted(Path("experiments").glob("*.yaml")):
        name = config_file.stem
        if names is not None and name not in names:
            continue
        model_file = results / name / "model.safetensors"
        if not model_file.is_file():
            missing.append(name)
            continue
        rows += task_rows(name, model_file, data_dir, smoke)
    return rows, missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.value_precision", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("docs/results"), help="experiment folders")
    parser.add_argument("--data-dir", help="where the datasets are (default: rsn2's data folder)")
    parser.add_argument("--experiments", help="comma-separated experiment names (default: every one)")
    parser.add_argument("--smoke", action="store_true", help="the first 128 test samples of each task only")
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    args = parser.parse_args(argv)
    names = args.experiments.split(",") if args.experiments else None

    def table() -> str:
        rows, missing = run(args.results, args.data_dir, names, args.smoke)
        worst = max((abs(r["change"]) for r in rows if r["metric"] == "accuracy %"), default=0.0)
        lines = [machine_line(), "", markdown_table(rows, TABLE_KEYS), ""]
        status = "met" if worst <= TARGET_POINTS + 1e-9 else "MISSED"  # 1e-9: float rounding of counts
        lines.append(f"Largest accuracy change: {worst:.2f} points (target: within {TARGET_POINTS}): {status}.")
        if missing:
            lines.append(f"No model file kept in: {', '.join(missing)}.")
        return "\n".join(lines) + "\n"

    return print_and_write(table, args.out, "benchmarks.value_precision", sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
