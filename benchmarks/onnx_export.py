"""Size and ONNX Runtime speed of an exported task with packed weights, against the dense export.

Usage::

    python -m benchmarks.onnx_export [--tasks 1,10] [--keep 0.1] [--batches 1,64]
                                     [--out docs/performance/onnx-export.md]

For FC-A with each task count (every task keeping ``--keep`` of each trunk layer, RSN2 selection on
random batches), task 0 is exported twice by :func:`rsn2.deploy.export_onnx`: as rsn2 writes it
(weights stored as their nonzeros and a bitmask, rebuilt by ONNX operators that ONNX Runtime folds
when the session is made) and with ``packed=False`` (dense kernels, zeros included). The table gives
both files' bytes and their ratio, the time to make a session, and the time of one run at each batch
size, measured alternately on the two sessions (best of ``--repeats`` rounds) in one process, with
their ratio (packed / dense: 1.0 means the same speed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.models import fc_a
from benchmarks.tables import machine_line, markdown_table, publish_table
from benchmarks.training_precision import cpu_feature_line
from rsn2.deploy import export_onnx


def _session(path: Path) -> tuple[Any, float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    start = time.perf_counter()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session, time.perf_counter() - start


def measure(tasks: int, keep: float, batches: list[int], repeats: int) -> list[dict[str, Any]]:
    net = fc_a(tasks, keep)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        packed = export_onnx(net, "task0", Path(tmp) / "packed.onnx")
        dense = export_onnx(net, "task0", Path(tmp) / "dense.onnx", packed=False)
        (s_packed, load_packed), (s_dense, load_dense) = _session(packed.path), _session(dense.path)
        name = s_packed.get_inputs()[0].name
        for batch in batches:
            x = np.random.default_rng(batch).random((batch, 784), dtype=np.float32)
            best = {"packed": float("inf"), "dense": float("inf")}
            runs = max(1, 256 // batch)
            for _ in range(repeats):
                for side, session in (("packed", s_packed), ("dense", s_dense)):
                    session.run(None, {name: x})
                    start = time.perf_counter()
                    for _ in range(runs):
                        session.run(None, {name: x})
                    best[side] = min(best[side], (time.perf_counter() - start) / runs)
            rows.append(
                {
                    "tasks": tasks,
                    "keep": keep,
                    "batch": batch,
                    "packed_MB": packed.bytes / 1e6,
                    "dense_MB": dense.bytes / 1e6,
                    "size_ratio": packed.bytes / dense.bytes,
                    "session_s_packed": load_packed,
                    "session_s_dense": load_dense,
                    "run_ms_packed": best["packed"] * 1e3,
                    "run_ms_dense": best["dense"] * 1e3,
                    "time_ratio": best["packed"] / best["dense"],
                }
            )
    return rows


KEYS = [
    "tasks",
    "keep",
    "batch",
    "packed_MB",
    "dense_MB",
    "size_ratio",
    "session_s_packed",
    "session_s_dense",
    "run_ms_packed",
    "run_ms_dense",
    "time_ratio",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_export", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="1,10", help="FC-A task counts (default 1,10)")
    parser.add_argument("--keep", type=float, default=0.1, help="kept fraction per task (default 0.1)")
    parser.add_argument("--batches", default="1,64", help="batch sizes timed (default 1,64)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds; the best is kept (default 5)")
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    rows = [r for n in args.tasks.split(",") for r in measure(int(n), args.keep, batches, args.repeats)]
    header = machine_line() + f", onnxruntime with {torch.get_num_threads()} threads.  \n{cpu_feature_line()}\n\n"
    publish_table(args.out, "benchmarks.onnx_export", argv, header + markdown_table(rows, KEYS) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
