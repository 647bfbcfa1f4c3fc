"""Run every benchmark and print the ratios: ``python -m benchmarks [--quick] [--json P] [--markdown P]``.

Each ratio is measured side by side in one run (candidates alternate within each round), so the
ratios are meaningful on a shared, noisy machine even when the absolute times are not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.files import model_bytes
from benchmarks.inference import layer_sweep, model_inference
from benchmarks.serve_memory import TABLE_KEYS as SERVING_KEYS
from benchmarks.serve_memory import run as serving_memory
from benchmarks.tables import markdown_table
from benchmarks.training import peak_memory, training_step
from benchmarks.training_precision import (
    compile_probe,
    compile_table,
    cpu_feature_line,
    precision_steps,
    precision_table,
)
from rsn2.devices import cpu_name, cpus_in_use
from rsn2.training.precision import cpu_features, has_bf16_units
from rsn2.vector_width import vector_width_setting

SERVING_LAYOUT_TARGETS = {
    "byte": ("one-byte steps (default)", 14, 1.3),
    "compact": ("4-bit steps (--compact-steps)", 14, 1.3),
    "byte-bf16": ("bfloat16 values (--values bfloat16)", 37, 1.0),
    "compact-bf16": ("4-bit steps and bfloat16 values", 37, 1.0),
}
"""Serving-memory layout -> (name in the targets table, issue, most multiples of one dense model)."""


def _targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issues' targets next to the worst measured figure for each (met / MISSED)."""
    rows = []

    def add(figure: str, measured: float, target: float, issue: int, higher_is_better: bool) -> None:
        met = measured >= target if higher_is_better else measured <= target
        rows.append(
            {
                "figure": figure,
                "issue": f"#{issue}",
                "measured": measured,
                "target": target,
                "status": "met" if met else "MISSED",
            }
        )

    fc = results.get("fc_a", [])
    for batch, targets in ((1, ((5, 3.0), (14, 5.0))), (512, ((5, 1.5), (14, 3.0)))):
        speedups = [r["speedup"] for r in fc if r["batch"] == batch]
        for issue, target in targets if speedups else ():
            add(
                f"FC-A per-task inference speedup, batch {batch} (worst over task counts)",
                min(speedups),
                target,
                issue,
                True,
            )
    conv_rows = results.get("conv_a", []) + results.get("conv_b", [])
    for arch, key in (("CONV-A", "conv_a"), ("CONV-B", "conv_b")):
        for batch, target in ((1, 1.5), (64, 1.2)):
            speedups = [r["speedup"] for r in results.get(key, []) if r["batch"] == batch]
            if speedups:
                add(
                    f"{arch} per-task inference speedup, batch {batch} (worst over task counts)",
                    min(speedups),
                    target,
                    14,
                    True,
                )
    if fc:
        add(
            "max relative difference to the masked path",
            max(r["max_rel_diff"] for r in fc + conv_rows),
            1e-5,
            14,
            False,
        )
    if "precision" in results:
        bf16_units = results["machine"]["bf16_units"]
        for row in results["precision"]:
            conv = row["architecture"] != "fc-a"
            target = (2.0 if bf16_units else 1.3) if conv else 1.3
            figure = f"training step speedup, {row['architecture']}, precision/memory format 'auto' over fp32"
            add(figure, row["auto_speedup"], target, 14, True)
    if "training_step" in results:
        add("training step time / dense control", results["training_step"]["slowdown"], 1.10, 5, False)
    for row in results.get("serving", []):
        if row["arch"] == "fc-a" and row["tasks"] == 10:
            layout, issue, target = SERVING_LAYOUT_TARGETS[row["steps"]]
            add(f"serving memory, 10 FC-A tasks / one dense model, {layout}", row["vs_one_dense"], target, issue, False)
    for batch in (1, 512):
        ratios = [r["bf16_speedup"] / r["speedup"] for r in fc if r["batch"] == batch and "bf16_speedup" in r]
        if ratios:
            add(f"FC-A bfloat16 values over float32, time ratio, batch {batch} (worst)", min(ratios), 1.0, 37, True)
    ten = [r for r in results.get("files", []) if r["tasks"] == 10]
    if ten:
        add("10-task model file / one dense model", ten[0]["ratio"], 1.15, 5, False)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and sizes (a minute; for a smoke check)")
    parser.add_argument(
        "--sections",
        default="inference,layers,training,precision,memory,serving,files",
        help="comma-separated subset of: inference,layers,training,precision,memory,serving,files",
    )
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    parser.add_argument("--markdown", type=Path, help="also write the printed tables to this Markdown file")
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    allowed = {"inference", "layers", "training", "precision", "memory", "serving", "files"}
    unknown = sections - allowed
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; allowed: {','.join(sorted(allowed))}")
    rounds, min_time = (3, 0.05) if args.quick else (7, 0.3)
    tasks = (1, 2) if args.quick else (1, 2, 5, 10)
    batches = (1, 4, 8, 64, 512)
    results: dict[str, Any] = {
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "cpus_in_use": cpus_in_use()[0],
            "physical_cores_in_use": cpus_in_use()[1],
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "cpu_features": cpu_features(),
            "bf16_units": has_bf16_units(torch.device("cpu")),
            "numba_vectors": vector_width_setting(),
        },
        "command": "python -m benchmarks"
        + (" --quick" if args.quick else "")
        + (f" --sections {args.sections}" if sections != allowed else ""),
    }
    report: list[str] = []

    def emit(text: str) -> None:
        print(text, flush=True)
        report.append(text)

    machine = results["machine"]
    emit(
        f"Command: `{results['command']}`  \nMachine: {machine['cpu']}, {machine['cores']} logical CPUs "
        f"({machine['cpus_in_use']} usable, on {machine['physical_cores_in_use']} physical cores), "
        f"torch {machine['torch']} with {machine['torch_threads']} threads, Python {machine['python']}; "
        f"Numba: {machine['numba_vectors']}  \n"
        f"{cpu_feature_line()}\n"
    )
    start = time.time()
    if "inference" in sections:
        results["fc_a"] = model_inference("fc-a", tasks, batches, rounds, min_time)
        emit("## Per-task inference, FC-A, 10% kept (speedup = dense control time / rsn2 time)\n")
        keys = [
            "tasks",
            "batch",
            "control_ms",
            "rsn2_ms",
            "speedup",
            "served_speedup",
            "compact_speedup",
            "bf16_speedup",
            "layered_speedup",
            "masked_speedup",
            "max_abs_diff",
            "max_rel_diff",
        ]
        emit(markdown_table(results["fc_a"], keys) + "\n")
        results["conv_a"] = model_inference("conv-a", (1, 2) if args.quick else (1, 5), batches, rounds, min_time)
        emit("## Per-task inference, CONV-A, 20% kept\n")
        emit(markdown_table(results["conv_a"], keys) + "\n")
        if not args.quick:
            results["conv_b"] = model_inference("conv-b", (1, 4), batches, rounds, min_time)
            emit("## Per-task inference, CONV-B, 25% kept\n")
            emit(markdown_table(results["conv_b"], keys) + "\n")
    if "layers" in sections:
        densities = (0.1, 0.3) if args.quick else (0.05, 0.1, 0.2, 0.3, 0.5)
        layer_batches = (1, 8, 512) if args.quick else (1, 8, 16, 64, 512)
        results["layers"] = layer_sweep(densities, layer_batches, rounds, min_time)
        emit("## One layer: sparse kernels vs the masked dense kernel (speedup over dense)\n")
        keys = ["layer", "density", "batch", "sparse_speedup", "rows_speedup", "feature_major_speedup"]
        emit(markdown_table(results["layers"], keys) + "\n")
    if "training" in sections:
        results["training_step"] = training_step(rounds, min_time)
        emit("## One training step, FC-A, batch 512, Adam (slowdown = rsn2 time / control time)\n")
        keys = ["earlier_tasks", "batch", "control_ms", "rsn2_ms", "slowdown"]
        emit(markdown_table([results["training_step"]], keys) + "\n")
    if "precision" in sections:
        archs = ("fc-a", "conv-a") if args.quick else ("fc-a", "conv-a", "conv-b")
        results["precision"] = precision_steps(rounds, min_time, archs)
        emit("## Training step by precision and memory format, batch 512, Adam (speedup over fp32 contiguous)\n")
        emit(precision_table(results["precision"]) + "\n")
        if not args.quick:
            results["compile"] = compile_probe()
            emit("## torch.compile, CONV-A multitask step, fp32 (speedup over eager)\n")
            emit(compile_table(results["compile"]) + "\n")
    if "memory" in sections:
        results["memory"] = peak_memory()
        emit("## Peak memory of training (fresh process each; MiB)\n")
        keys = [
            "steps",
            "control_peak_mib",
            "rsn2_peak_mib",
            "peak_ratio",
            "control_growth_mib",
            "rsn2_growth_mib",
            "growth_ratio",
        ]
        emit(markdown_table([results["memory"]], keys) + "\n")
    if "serving" in sections:
        counts = {"fc-a": [10]} if args.quick else {"fc-a": [1, 10], "conv-a": [5]}
        results["serving"] = serving_memory(counts)
        emit("## Serving memory: resident growth of every task's model (fresh process each; MB = MiB)\n")
        emit(markdown_table(results["serving"], SERVING_KEYS) + "\n")
    if "files" in sections:
        results["files"] = model_bytes((2, 5, 10) if not args.quick else (2, 10))
        emit("## Model file bytes, FC-A (ratio = multitask file / one dense model file)\n")
        keys = ["tasks", "model_bytes", "dense_bytes", "ratio", "separate_models_bytes"]
        emit(markdown_table(results["files"], keys) + "\n")
    targets = _targets(results)
    if targets:
        results["targets"] = targets
        emit("## Targets (this machine's CPU; `issue`: the issue that set the target)\n")
        emit(markdown_table(targets, ["figure", "issue", "measured", "target", "status"]) + "\n")
    results["wall_s"] = time.time() - start
    emit(f"Wall time {results['wall_s']:.0f} s.")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
