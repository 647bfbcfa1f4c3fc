"""Running a benchmark: every method x seed into ``OUT/runs/``, resumable, then ``OUT/results.json``.

Layout of ``OUT`` (``rsn2 cl run FILE --out OUT``)::

    runs/<method>-seed<k>.json   one run: its identity, R, final accuracies, stage seconds
    results.json                 per method: ACC, BWT, forgetting, LA (mean, std, values), mean R
    accuracy.png                 every task's accuracy after every stage, one panel per method

A run file is reused when its identity (the benchmark's stream, network, capacity, training settings,
the method's options, the smoke flag) equals the current one; a file with another identity is refused
(:class:`~rsn2.errors.ResultsFolderError`) before anything is trained, so that numbers of different
settings never mix.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsn2.continual.config import METHODS, BenchmarkConfig
from rsn2.continual.figures import write_figure
from rsn2.continual.methods import MethodRun, run_method
from rsn2.continual.networks import flat_inputs
from rsn2.continual.streams import ContinualTask, build_stream
from rsn2.devices import cpu_name
from rsn2.errors import ConfigError, ResultsFolderError
from rsn2.io import atomic_write_bytes
from rsn2.metrics import average_accuracy, average_forgetting, backward_transfer, learning_accuracy

METRICS: dict[str, Callable[[Any], float]] = {
    "ACC": average_accuracy,
    "BWT": backward_transfer,
    "forgetting": average_forgetting,
    "LA": learning_accuracy,
}


METHOD_REVISIONS = {"packnet-disjoint": 2, "packnet": 3}
"""Bumped when a method's implementation changes what it computes, so that older runs are refused
rather than mixed in (packnet-disjoint 2: the dense phase rescales the free positions; packnet 3: a
task reads every earlier task's weights and zeroes what it releases, the paper's PackNet)."""


def run_identity(config: BenchmarkConfig, method: str, seed: int, smoke: bool) -> dict[str, Any]:
    """What makes a stored run the one this call would compute."""
    described = config.to_dict()
    revision = {"revision": METHOD_REVISIONS[method]} if method in METHOD_REVISIONS else {}
    return {
        "benchmark": config.name,
        "stream": described["stream"],
        "network": described["network"],
        "keep_fraction": config.keep_fraction,
        "training": described["training"],
        "method": method,
        "options": config.methods.get(method, {}),
        **revision,
        "seed": seed,
        "smoke": smoke,
    }


def run_benchmark(
    config: BenchmarkConfig,
    out: str | os.PathLike[str],
    *,
    methods: Sequence[str] | None = None,
    seeds: int = 3,
    data_dir: str | os.PathLike[str] | None = None,
    smoke: bool = False,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Run ``methods`` (default: the file's, in its order) for seeds ``0..seeds-1``; write and return
    the benchmark's results (see the module docstring)."""
    chosen = list(methods) if methods else list(config.methods)
    unknown = [m for m in chosen if m not in config.methods]
    if unknown:
        raise ConfigError(
            f"method(s) {unknown} are not in {config.source or config.name}; it has {list(config.methods)}"
        )
    if seeds < 1:
        raise ConfigError(f"seeds must be >= 1, got {seeds}")
    folder = Path(out) / "runs"
    stored = {(m, s): _stored_run(folder, config, m, s, smoke) for m in chosen for s in range(seeds)}  # refuse early
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(seeds):
        todo = [m for m in chosen if stored[(m, seed)] is None]
        if not todo:
            continue
        stream = benchmark_stream(config, seed, data_dir, smoke)
        for method in todo:
            log(f"[{config.name}] {method} seed {seed}: training {len(stream)} tasks")
            run = run_method(method, config, stream, seed)
            record = {
                "identity": run_identity(config, method, seed, smoke),
                **run.to_dict(),
                "cpu": cpu_name(),
            }
            atomic_write_bytes(folder / f"{method}-seed{seed}.json", json.dumps(record, indent=1).encode())
            stored[(method, seed)] = record
            acc = statistics.fmean(run.final)
            log(f"[{config.name}] {method} seed {seed}: ACC {acc:.2f}% in {sum(run.stage_seconds):.0f} s")
    results = aggregate(config, {m: [stored[(m, s)] for s in range(seeds)] for m in chosen}, smoke)  # type: ignore[misc]
    atomic_write_bytes(Path(out) / "results.json", json.dumps(results, indent=1).encode())
    write_figure(results, Path(out) / "accuracy.png")
    return results


def benchmark_stream(config: BenchmarkConfig, seed: int, data_dir: Any, smoke: bool = False) -> list[ContinualTask]:
    """The benchmark's tasks in training order for ``seed`` (see :func:`~rsn2.continual.streams.build_stream`)."""
    s = config.stream
    return build_stream(
        s.kind,
        s.dataset,
        tasks=s.tasks,
        classes_per_task=s.classes_per_task,
        flatten=flat_inputs(config),
        seed=seed,
        data_dir=data_dir,
        smoke=smoke,
    )


def stored_record(path: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The run record at ``path`` if it is there and was made with ``identity``; None if absent.

    Raises:
        ResultsFolderError: the file is unreadable, or holds a run of other settings.
    """
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsFolderError(f"{path} is not a readable run file ({exc}); delete it to rerun") from None
    if not isinstance(record, dict) or record.get("identity") != identity:
        raise ResultsFolderError(
            f"{path} holds a run of other settings (benchmark, training, options or smoke flag differ); "
            "give another --out or delete the file to rerun it"
        )
    return record


def _stored_run(folder: Path, config: BenchmarkConfig, method: str, seed: int, smoke: bool) -> dict[str, Any] | None:
    return stored_record(folder / f"{method}-seed{seed}.json", run_identity(config, method, seed, smoke))


def summary_stats(values: Sequence[float]) -> dict[str, Any]:
    """``{"values", "mean", "std"}`` (sample std, 0 for one value), rounded to 4 decimals."""
    vals = [round(float(v), 4) for v in values]
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"values": vals, "mean": round(statistics.fmean(vals), 4), "std": round(std, 4)}


def aggregate(config: BenchmarkConfig, runs: dict[str, list[dict[str, Any]]], smoke: bool) -> dict[str, Any]:
    """The benchmark's results from its run records: per method the metrics over seeds and the mean R."""
    methods: dict[str, Any] = {}
    for method, records in runs.items():
        entry: dict[str, Any] = {"seeds": len(records)}
        if all(r["R"] is not None for r in records):
            matrices = [np.array([[np.nan if v is None else v for v in row] for row in r["R"]]) for r in records]
            for name, fn in METRICS.items():
                entry[name] = summary_stats([fn(m) for m in matrices])
            entry["R_mean"] = [
                [None if np.isnan(v) else round(float(v), 4) for v in row] for row in np.mean(matrices, 0)
            ]
        else:  # joint training: one stage, only the final accuracies
            entry["ACC"] = summary_stats([statistics.fmean(r["final"]) for r in records])
            for name in ("BWT", "forgetting", "LA"):
                entry[name] = {"values": [], "mean": None, "std": None, "note": "one stage: not defined"}
        entry["final_mean"] = [round(float(v), 4) for v in np.mean([r["final"] for r in records], 0)]
        entry["train_seconds"] = summary_stats([sum(r["stage_seconds"]) for r in records])
        entry["stage_seconds_mean"] = [round(float(v), 2) for v in np.mean([r["stage_seconds"] for r in records], 0)]
        entry["details"] = records[0].get("details", {})
        reports = [r.get("details", {}).get("task_inference") for r in records]
        if reports and all(reports):  # class-incremental evaluation (runs made before it have none)
            entry["task_inference"] = task_inference_stats(reports)  # type: ignore[arg-type]
        capacities = [r.get("details", {}).get("storage", {}).get("capacity") for r in records]
        if all(c is not None for c in capacities):  # WSN's capacity measure (subnetwork methods)
            entry["capacity"] = summary_stats(capacities)
        methods[method] = entry
    return {
        "benchmark": config.to_dict(),
        "tasks": runs[next(iter(runs))][0]["tasks"],
        "smoke": smoke,
        "published": {"source": config.published_source, "acc": config.published_acc},
        "methods": methods,
    }


def task_inference_stats(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each rule's task identification and class-incremental accuracy per batch size over seeds
    (``{"entropy": {"task_id": {"1": stats, ...}, ...}, "one-shot": ..., "thresholds": ...}``), from the
    runs' ``details["task_inference"]`` (:mod:`rsn2.continual.task_identification`)."""
    out: dict[str, Any] = {}
    for rule in ("entropy", "one-shot"):
        if all(rule in r for r in reports):
            out[rule] = {
                measure: {b: summary_stats([r[rule][measure][b] for r in reports]) for b in reports[0][rule][measure]}
                for measure in ("task_id", "class_incremental")
            }
            out[rule]["microseconds_per_sample"] = summary_stats([1e6 * r[rule]["seconds_per_sample"] for r in reports])
    if all("thresholds" in r for r in reports):
        at = reports[0]["thresholds"]["at"]
        out["thresholds"] = {
            "default": reports[0]["thresholds"]["default"],
            "at": {
                t: {
                    key: summary_stats([v for r in reports if (v := r["thresholds"]["at"][t][key]) is not None])
                    if any(r["thresholds"]["at"][t][key] is not None for r in reports)
                    else None
                    for key in ("answered", "task_id_answered")
                }
                for t in at
            },
        }
    return out


__all__ = [
    "METHODS",
    "MethodRun",
    "aggregate",
    "benchmark_stream",
    "run_benchmark",
    "run_identity",
    "summary_stats",
    "task_inference_stats",
]
