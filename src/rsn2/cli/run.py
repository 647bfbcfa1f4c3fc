"""``rsn2 run``: an experiment file, its seeds, dense controls, results, report and figures."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rsn2.cli.options import data_dir_option


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the command's parser to ``sub``."""
    run_parser = sub.add_parser(
        "run",
        help="run an experiment file: multitask model, dense controls, results, report, figures",
        description="Train the multitask model of CONFIG and every dense control for each seed, evaluate on the "
        "test sets and write DIR/results.json, DIR/report.md, DIR/figures/ and DIR/model.safetensors. Finished "
        "seeds are kept in DIR/seeds/, the seed in progress in DIR/checkpoints/ (finished stages and controls, "
        "and the stage in training after every epoch); rerunning with the same DIR resumes.",
    )
    run_parser.add_argument("config", metavar="CONFIG", help="experiment YAML file (see experiments/)")
    run_parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    run_parser.add_argument("--seeds", type=int, default=1, help="number of seeds (0..N-1; default 1)")
    data_dir_option(run_parser)
    run_parser.add_argument(
        "--smoke", action="store_true", help="tiny subsets and one epoch: checks the pipeline in seconds"
    )
    run_parser.add_argument(
        "--device",
        default="auto",
        help="where to train: auto (CUDA when available, else CPU), cpu, cuda or cuda:N (default auto)",
    )
    run_parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars and per-epoch lines while training (default: bars on a terminal, else the lines "
        "only; --no-progress: nothing)",
    )

    run_parser.set_defaults(handler=run)


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    import shlex
    from pathlib import Path

    from rsn2.devices import resolve_device
    from rsn2.experiments import load_config
    from rsn2.experiments.report import target_status
    from rsn2.experiments.runner import run_experiment
    from rsn2.training import distributed

    if args.seeds < 1:
        print("rsn2 run: error: --seeds must be >= 1", file=sys.stderr)
        return 2
    config = load_config(args.config)
    command = "rsn2 " + shlex.join(list(argv) if argv is not None else sys.argv[1:])
    ranks = distributed.init_from_env(resolve_device(args.device))  # under torchrun: join its process group
    if ranks is not None:
        command = f"torchrun --nproc_per_node {ranks.world_size} -m {command}"
    writer = distributed.is_writer()
    try:
        results = run_experiment(
            config,
            Path(args.out),
            seeds=args.seeds,
            data_dir=args.data_dir,
            smoke=args.smoke,
            device=args.device,
            progress=(True if sys.stderr.isatty() else "lines") if args.progress is None else args.progress,
            command=command,
        )
    except KeyboardInterrupt:
        print(
            f"rsn2 run: interrupted; finished seeds are kept in {args.out}/seeds and the seed in progress in "
            f"{args.out}/checkpoints (rerun the same command to resume after the last finished epoch)",
            file=sys.stderr,
        )
        return 130
    finally:
        distributed.shutdown()
    if not writer:  # rank 0 prints the results
        return 0
    for name, row in results["tasks"].items():
        print(
            f"{name:<10} {row['metric']:<9} multitask {row['multitask']['mean']:.4f}  "
            f"control {row['control']['mean']:.4f}  {target_status(row)}"
        )
    print(f"wrote {args.out}/results.json, report.md, figures/")
    return 0
