"""How many tasks fit: rsn2 on a long stream at several keep fractions, until the network is full.

``rsn2 cl capacity FILE --out DIR`` trains, for each keep fraction, one task per stage of the file's
stream (made ``--max-tasks`` long) until a task no longer fits; rsn2 then refuses it with a
:class:`~rsn2.errors.CapacityError` raised by ``add_tasks`` before anything changes, and the run ends
there. Each new task's accuracy is compared with single-task learning (STL: one dense model per task,
trained on the stream's first ``reference_tasks`` tasks with the same settings).

Writes ``DIR/f<fraction>.json`` per fraction (resumable: a finished fraction with the same settings is
reused), ``DIR/results.json`` and ``DIR/capacity.png``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rsn2.continual.config import BenchmarkConfig
from rsn2.continual.figures import write_capacity_figure
from rsn2.continual.methods import run_method, run_until_full
from rsn2.continual.networks import flat_inputs
from rsn2.continual.runner import stored_record
from rsn2.continual.streams import build_stream
from rsn2.errors import ConfigError
from rsn2.io import atomic_write_bytes
from rsn2.metrics import average_accuracy, backward_transfer

DEFAULT_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def capacity_sweep(
    config: BenchmarkConfig,
    out: str | os.PathLike[str],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    max_tasks: int = 50,
    reference_tasks: int = 3,
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    smoke: bool = False,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Run the sweep (see the module docstring); returns what ``DIR/results.json`` holds."""
    if config.stream.kind != "permuted":
        raise ConfigError("the capacity sweep needs a permuted stream (it makes the stream --max-tasks long)")
    if max_tasks < 1 or not 1 <= reference_tasks <= max_tasks:
        raise ConfigError(
            f"need max_tasks >= 1 and 1 <= reference_tasks <= max_tasks, got {max_tasks}, {reference_tasks}"
        )
    for f in fractions:
        if not 0 < f <= 1:
            raise ConfigError(f"keep fractions must be in (0, 1], got {f}")
    folder = Path(out)
    identity = {"benchmark": config.to_dict(), "max_tasks": max_tasks, "seed": seed, "smoke": smoke}
    files = {f: folder / f"f{f:g}.json" for f in fractions}
    stored = {f: stored_record(path, {**identity, "keep_fraction": f}) for f, path in files.items()}
    ref_path = folder / "stl-reference.json"
    reference = stored_record(ref_path, {**identity, "reference_tasks": reference_tasks})
    folder.mkdir(parents=True, exist_ok=True)
    stream = build_stream(
        "permuted",
        config.stream.dataset,
        tasks=max_tasks,
        flatten=flat_inputs(config),
        seed=seed,
        data_dir=data_dir,
        smoke=smoke,
    )
    if reference is None:
        log(f"[capacity] STL reference on the first {reference_tasks} tasks")
        stl = run_method("stl", config, stream[:reference_tasks], seed)
        reference = {"identity": {**identity, "reference_tasks": reference_tasks}, "final": stl.final}
        atomic_write_bytes(ref_path, json.dumps(reference, indent=1).encode())
    stl_acc = statistics.fmean(reference["final"])
    for f in fractions:
        if stored[f] is not None:
            continue
        log(f"[capacity] keep fraction {f:g}: up to {max_tasks} tasks")
        run = run_until_full(replace(config, keep_fraction=f), stream, seed)
        record = {"identity": {**identity, "keep_fraction": f}, **run.to_dict()}
        atomic_write_bytes(files[f], json.dumps(record, indent=1).encode())
        stored[f] = record
        log(f"[capacity] keep fraction {f:g}: {len(run.tasks)} tasks, ACC {statistics.fmean(run.final):.2f}%")
    results = {
        "benchmark": config.to_dict(),
        "seed": seed,
        "smoke": smoke,
        "stl_reference": {"tasks": reference_tasks, "values": reference["final"], "mean": round(stl_acc, 4)},
        "fractions": {f"{f:g}": summarize_fraction(stored[f], stl_acc) for f in fractions},  # type: ignore[arg-type]
    }
    atomic_write_bytes(folder / "results.json", json.dumps(results, indent=1).encode())
    write_capacity_figure(results, folder / "capacity.png")
    return results


def summarize_fraction(record: dict[str, Any], stl_acc: float) -> dict[str, Any]:
    """What a table row says of one fraction: tasks that fit, ACC, BWT, each task's accuracy when
    learned, the first task more than 1 point below STL, and how the run ended."""
    learned = [row[i] for i, row in enumerate(record["R"])]
    below = [i + 1 for i, a in enumerate(learned) if a < stl_acc - 1.0]
    return {
        "tasks": len(record["tasks"]),
        "ACC": round(average_accuracy(_matrix(record["R"])), 4),
        "BWT": backward_transfer(_matrix(record["R"])),
        "learned": [round(a, 4) for a in learned],
        "first_below_stl": below[0] if below else None,
        "capacity_error": record["details"].get("capacity_error"),
        "train_seconds": round(sum(record["stage_seconds"]), 1),
    }


def _matrix(rows: list[list[float | None]]) -> list[list[float]]:
    return [[float("nan") if v is None else v for v in row] for row in rows]
