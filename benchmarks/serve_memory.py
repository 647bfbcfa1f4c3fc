"""Memory of serving every task of an FC-A model, against one dense model per task.

Usage::

    python -m benchmarks.serve_memory [--tasks 1,2,5,10] [--out docs/performance/serve-memory.md]

For each task count, a fresh Python process loads an rsn2 model file (FC-A, 10% kept per task), makes
the per-task inference modules ``rsn2 serve`` runs (:class:`rsn2.inference.TaskModel`), drops the
network (as the server does), and reports how much its resident memory grew (after a warm-up that
compiles the sparse kernels and warms PyTorch's allocator, and with freed memory handed back by
``malloc_trim``); another fresh process builds the same number of dense FC-A models (plain
``nn.Linear`` stacks, what one would serve today) and reports the same. ``held_MB`` is what the
TaskModels hold by their own count (``nbytes``). The ratio ``vs_one_dense`` divides by the growth
for one dense model, measured the same way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.models import fc_a
from benchmarks.tables import machine_line, markdown_table, publish_table
from rsn2.io import save_model

_CHILD = r"""
import gc, json, os, sys
import torch
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
kind, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
import ctypes
from rsn2.inference import TaskModel
from rsn2.io import load_model
from benchmarks.models import plain_control, fc_a
libc = ctypes.CDLL("libc.so.6")
def settle():
    gc.collect(); libc.malloc_trim(0)
warm = fc_a(1, 0.1)  # compile the sparse kernels and warm torch's allocator first: not the models' memory
with torch.inference_mode():
    TaskModel.from_network(warm, "task0")(torch.rand(1, 784)); plain_control(warm, "task0")(torch.rand(1, 784))
del warm
settle(); before = rss(); held = 0
if kind == "rsn2":
    net = load_model(path)
    models = [TaskModel.from_network(net, t) for t in net.task_names]
    held = sum(m.nbytes for m in models)
    x = torch.rand(1, 784)
    with torch.inference_mode():
        for m in models: m(x)
    del net
else:
    template = fc_a(1, 1.0)
    models = [plain_control(template, "task0").eval() for _ in range(n)]
    del template
    with torch.inference_mode():
        for m in models: m(torch.rand(1, 784))
settle()
print(json.dumps({"grown": rss() - before, "held": held}))
"""


def _child(kind: str, path: str, n: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, path, str(n)], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(task_counts: list[int]) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        one_dense = _child("dense", "", 1)["grown"]
        for n in task_counts:
            path = Path(tmp) / f"fc-a-{n}.safetensors"
            save_model(fc_a(n, 0.1), path)
            ours, dense = _child("rsn2", str(path), n), _child("dense", "", n)
            rows.append(
                {
                    "tasks": n,
                    "rsn2_MB": ours["grown"] / 2**20,
                    "held_MB": ours["held"] / 2**20,
                    "dense_models_MB": dense["grown"] / 2**20,
                    "vs_one_dense": ours["grown"] / one_dense,
                    "vs_dense_models": ours["grown"] / dense["grown"],
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="1,2,5,10", help="task counts (default 1,2,5,10)")
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    args = parser.parse_args(argv)
    rows = run([int(t) for t in args.tasks.split(",")])
    keys = ["tasks", "rsn2_MB", "held_MB", "dense_models_MB", "vs_one_dense", "vs_dense_models"]
    table = machine_line() + "\n\n" + markdown_table(rows, keys) + "\n"
    publish_table(args.out, "benchmarks.serve_memory", argv, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
