"""The demo on a busy machine under PyTorch's thread settings, side by side.

Usage::

    python -m benchmarks.threads [--busy 2] [--out docs/performance/threads.md]

Starts ``--busy`` processes that keep one core each busy (a plain Python loop), then runs
``python -m rsn2 --threads T demo --json`` once per setting, one after the other: the OpenMP
runtime's own wait policy (spin a while, then sleep; the run sets ``OMP_WAIT_POLICY`` to an empty
string, which rsn2 keeps and the runtime ignores), ``PASSIVE`` (sleep at once, rsn2's default), with
PyTorch's default thread count or one thread. The table gives each run's wall time and its speedup
over the first; the busy processes run throughout, so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.tables import machine_line, markdown_table, publish_table

SETTINGS: dict[str, tuple[dict[str, str], int | None]] = {
    "OMP_WAIT_POLICY empty (the OpenMP runtime's default, as before rsn2 set it)": ({"OMP_WAIT_POLICY": ""}, None),
    "OMP_WAIT_POLICY=PASSIVE, default threads (rsn2's default)": ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
    "OMP_WAIT_POLICY=PASSIVE, 1 thread (what rsn2 demo uses)": ({"OMP_WAIT_POLICY": "PASSIVE"}, 1),
}


def run(busy: int) -> list[dict[str, Any]]:
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    rows: list[dict[str, Any]] = []
    try:
        for name, (env, threads) in SETTINGS.items():
            cmd = [sys.executable, "-m", "rsn2"]
            cmd += ["--threads", str(threads)] if threads else ["--threads", str(torch.get_num_threads())]
            cmd += ["demo", "--json"]
            full_env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
            start = time.perf_counter()
            done = subprocess.run(cmd, env={**full_env, **env}, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"{name}: the demo failed: {done.stderr[-500:]}")
            rows.append({"setting": name, "threads": threads or torch.get_num_threads(), "seconds": seconds})
    finally:
        for p in spinners:
            p.kill()
    base = rows[0]["seconds"]
    for r in rows:
        r["speedup"] = base / r["seconds"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.threads", description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 1, help="busy processes (default: one per core)")
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    args = parser.parse_args(argv)
    rows = run(args.busy)
    table = (
        machine_line() + f"; {args.busy} busy processes "
        "started by the benchmark, running throughout (other load on the machine comes on top).\n\n"
        + markdown_table(rows, ["setting", "threads", "seconds", "speedup"])
        + "\n"
    )
    publish_table(args.out, "benchmarks.threads", argv, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
