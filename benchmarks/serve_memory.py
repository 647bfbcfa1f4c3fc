"""Memory of serving every task of a multitask model, against one dense model per task.

Usage::

    python -m benchmarks.serve_memory [--fc-tasks 1,2,5,10] [--conv-tasks 1,5] [--out docs/performance/serve-memory.md]

For each architecture (FC-A at 10% kept per task, CONV-A at 20%), task count and layout of the
packed shares (:data:`LAYOUTS`: one-byte steps, the default, or ``compact``: ``rsn2 serve
--compact-steps``; float32 values, or ``bf16``: ``rsn2 serve --values bfloat16``), a fresh
Python process loads an rsn2 model file and makes the per-task inference modules ``rsn2 serve``
runs (:func:`rsn2.inference.task_models`, within the server's default dense budget). It drops the
network (as the server does), runs every task once at batch 1 and once at batch 64, and reports how
much its resident memory grew. The growth is read after a warm-up that compiles every sparse kernel
of both layouts, warms PyTorch's allocator at both batch sizes and loads a model file once (the
loader's imports are the process's, not the models'), and with freed memory handed back by
``malloc_trim``. Another fresh process, warmed up the same way, builds the same number of dense
models of the architecture (plain ``nn.Linear``/``nn.Conv2d`` stacks, what one would serve today),
runs them the same way and reports the same. ``held_MB`` is what the TaskModels hold by their own
count (``nbytes``). The ratio ``vs_one_dense`` divides by the growth for one dense model of the
same architecture, measured the same way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.models import SERVED
from benchmarks.tables import machine_line, markdown_table, publish_table
from rsn2.io import save_model

BATCHES = (1, 64)

_CHILD = r"""
import gc, json, os, sys, tempfile
import torch
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
kind, arch, path, n, layout = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
import ctypes
from rsn2.inference import SparsePolicy, TaskModel, task_models
from rsn2.io import load_model, save_model
from benchmarks.models import SERVED, plain_control
from benchmarks.serve_memory import BATCHES
libc = ctypes.CDLL("libc.so.6")
def settle():
    gc.collect(); libc.malloc_trim(0)
build, keep, shape = SERVED[arch].build, SERVED[arch].keep, SERVED[arch].input_shape
def run_all(models):
    with torch.inference_mode():
        for b in BATCHES:
            x = torch.rand(b, *shape)
            for m in models: m(x)
from benchmarks.serve_memory import LAYOUTS
policy = SparsePolicy(**LAYOUTS[layout])
# compile every sparse kernel, warm torch's allocator and the loader first: not the models' memory
warm = build(1, keep)
with tempfile.TemporaryDirectory() as tmp:
    save_model(warm, os.path.join(tmp, "warm.safetensors"))
    del warm
    warm = load_model(os.path.join(tmp, "warm.safetensors"))
policies = [SparsePolicy(**changes) for changes in LAYOUTS.values()]
warm_models = [task_models(warm, p, dense_budget=0)["task0"] for p in policies]  # all sparse
warm_models += [TaskModel.from_network(warm, "task0", p) for p in policies]
run_all(warm_models + [plain_control(warm, "task0")])
del warm_models
del warm
settle(); before = rss(); held = 0
if kind == "rsn2":
    net = load_model(path)
    models = list(task_models(net, policy).values())  # as rsn2 serve makes them, within its default dense budget
    held = sum(m.nbytes for m in models)
    del net
else:
    template = build(1, 1.0)
    models = [plain_control(template, "task0").eval() for _ in range(n)]
    del template
run_all(models)
settle()
print(json.dumps({"grown": rss() - before, "held": held}))
"""

LAYOUTS: dict[str, dict[str, Any]] = {
    "byte": {},
    "compact": {"compact_steps": True},
    "byte-bf16": {"values": "bfloat16"},
    "compact-bf16": {"compact_steps": True, "values": "bfloat16"},
}
"""Layouts measured, as changes to the default policy: one-byte steps and float32 values (the default),
4-bit steps (``rsn2 serve --compact-steps``), bfloat16 values (``--values bfloat16``), both."""


def _child(kind: str, arch: str, path: str, n: int, layout: str = "byte") -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, arch, path, str(n), layout], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(task_counts: dict[str, list[int]], layouts: tuple[str, ...] = tuple(LAYOUTS)) -> list[dict[str, Any]]:
    """One row per architecture, task count and layout (``{"fc-a": [1, 10], "conv-a": [5]}``)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch, counts in task_counts.items():
            build, keep = SERVED[arch].build, SERVED[arch].keep
            one_dense = _child("dense", arch, "", 1)["grown"]
            for n in counts:
                path = Path(tmp) / f"{arch}-{n}.safetensors"
                save_model(build(n, keep), path)
                dense = _child("dense", arch, "", n)
                for layout in layouts:
                    ours = _child("rsn2", arch, str(path), n, layout)
                    rows.append(
                        {
                            "arch": arch,
                            "keep": keep,
                            "tasks": n,
                            "steps": layout,
                            "rsn2_MB": ours["grown"] / 2**20,
                            "held_MB": ours["held"] / 2**20,
                            "dense_models_MB": dense["grown"] / 2**20,
                            "vs_one_dense": ours["grown"] / one_dense,
                            "vs_dense_models": ours["grown"] / dense["grown"],
                        }
                    )
    return rows


TABLE_KEYS = ["arch", "keep", "tasks", "steps", "rsn2_MB", "held_MB", "dense_models_MB", "vs_one_dense"]
TABLE_KEYS += ["vs_dense_models"]
"""Columns of the serving-memory table."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--fc-tasks", default="1,2,5,10", help="FC-A task counts (default 1,2,5,10; '' for none)")
    parser.add_argument("--conv-tasks", default="1,5", help="CONV-A task counts (default 1,5; '' for none)")
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    args = parser.parse_args(argv)
    counts = {"fc-a": args.fc_tasks, "conv-a": args.conv_tasks}
    rows = run({arch: [int(t) for t in c.split(",")] for arch, c in counts.items() if c})
    table = machine_line() + "\n\n" + markdown_table(rows, TABLE_KEYS) + "\n"
    publish_table(args.out, "benchmarks.serve_memory", argv, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
