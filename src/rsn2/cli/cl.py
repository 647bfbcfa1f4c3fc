"""``rsn2 cl run | capacity | summary``: the continual-learning benchmarks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rsn2.cli.options import data_dir_option


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the command's parser to ``sub``."""
    cl = sub.add_parser(
        "cl",
        help="continual-learning benchmarks: rsn2 beside PackNet, EWC, fine-tuning, joint and STL",
        description="Run a benchmark file (benchmarks/cl/*.yaml: a task stream, a network, training settings and "
        "methods), each task in its own stage with its own head, or summarise the results of several.",
    )
    cl_sub = cl.add_subparsers(dest="cl_command", required=True, metavar="ACTION")
    cl_run = cl_sub.add_parser(
        "run",
        help="train every method of FILE for each seed; write R, metrics and a figure",
        description="Train each method of FILE (or --methods) for seeds 0..N-1 and write "
        "DIR/runs/<method>-seed<k>.json (R, final accuracies, stage seconds), DIR/results.json (ACC, BWT, "
        "forgetting, LA: mean, std, values) and DIR/accuracy.png. Runs already in DIR with the same settings are "
        "reused; runs of other settings are refused.",
    )
    cl_run.add_argument("config", metavar="FILE", help="benchmark YAML file (see benchmarks/cl/)")
    cl_run.add_argument("--out", required=True, metavar="DIR", help="output folder")
    cl_run.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1; default 3)")
    cl_run.add_argument("--methods", metavar="M,M", help="comma-separated subset of the file's methods")
    data_dir_option(cl_run)
    cl_run.add_argument("--smoke", action="store_true", help="256 training / 128 test samples per task")
    cl_capacity = cl_sub.add_parser(
        "capacity",
        help="how many tasks fit: rsn2 on FILE's permuted stream at several keep fractions until one is refused",
        description="For each keep fraction, train rsn2 on FILE's permuted stream (made --max-tasks long), one task "
        "per stage, until a task no longer fits (refused with a capacity error before anything changes). Writes "
        "DIR/f<fraction>.json (reused when rerun with the same settings), DIR/stl-reference.json (one dense model "
        "per task on the first tasks), DIR/results.json and DIR/capacity.png.",
    )
    cl_capacity.add_argument("config", metavar="FILE", help="benchmark YAML file with a permuted stream")
    cl_capacity.add_argument("--out", required=True, metavar="DIR", help="output folder")
    cl_capacity.add_argument(
        "--fractions", default="0.01,0.02,0.05,0.1,0.2,0.5", metavar="F,F", help="keep fractions (default 1%%..50%%)"
    )
    cl_capacity.add_argument("--max-tasks", type=int, default=50, help="longest stream (default 50)")
    cl_capacity.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    data_dir_option(cl_capacity)
    cl_capacity.add_argument("--smoke", action="store_true", help="256 training / 128 test samples per task")
    cl_summary = cl_sub.add_parser(
        "summary",
        help="DIR/results.json and DIR/README.md from every DIR/<benchmark>/results.json",
        description="Collect the results of every full benchmark run in DIR/<name>/ and write DIR/results.json "
        "({benchmark: {method: {ACC, BWT, forgetting, LA, seeds}}}) and DIR/README.md (tables beside the published "
        "figures, with rsn2's targets).",
    )
    cl_summary.add_argument("results_dir", metavar="DIR", help="folder holding one results folder per benchmark")

    cl.set_defaults(handler=run)


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    from pathlib import Path

    from rsn2.continual import load_benchmark_config, run_benchmark
    from rsn2.continual.summary import write_summary

    if args.cl_command == "summary":
        for path in write_summary(Path(args.results_dir)):
            print(f"wrote {path}")
        return 0
    if args.cl_command == "capacity":
        from rsn2.continual.capacity import capacity_sweep

        try:
            fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
        except ValueError:
            print(f"rsn2 cl capacity: error: --fractions must be numbers, got {args.fractions!r}", file=sys.stderr)
            return 2
        sweep = capacity_sweep(
            load_benchmark_config(args.config),
            args.out,
            fractions=fractions,
            max_tasks=args.max_tasks,
            seed=args.seed,
            data_dir=args.data_dir,
            smoke=args.smoke,
        )
        for f, row in sweep["fractions"].items():
            print(
                f"keep {float(f):6.1%}: {row['tasks']:3d} tasks, ACC {row['ACC']:.2f}, first below STL-1: "
                f"{row['first_below_stl']}"
            )
        print(f"wrote {args.out}/results.json, capacity.png")
        return 0
    if args.seeds < 1:
        print("rsn2 cl run: error: --seeds must be >= 1", file=sys.stderr)
        return 2
    config = load_benchmark_config(args.config)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    results = run_benchmark(
        config, args.out, methods=methods, seeds=args.seeds, data_dir=args.data_dir, smoke=args.smoke
    )
    for method, entry in results["methods"].items():
        bwt = entry["BWT"]["mean"]
        bwt_text = f"{bwt:+.2f}" if bwt is not None else "-"
        print(f"{method:<9} ACC {entry['ACC']['mean']:6.2f} ± {entry['ACC']['std']:.2f}  BWT {bwt_text}")
    print(f"wrote {args.out}/results.json, accuracy.png, runs/")
    return 0
