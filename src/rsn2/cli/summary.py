"""``rsn2 summary``: every experiment's results beside the paper's."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the command's parser to ``sub``."""
    summary = sub.add_parser(
        "summary",
        help="put every experiment's results side by side with the paper (writes DIR/README.md)",
        description="Read DIR/<name>/results.json for every experiment file and write DIR/README.md: one row per "
        "task, ours beside the paper's, with the target status; experiments without results are listed as not run.",
    )
    summary.add_argument("results_dir", metavar="DIR", help="folder holding one results folder per experiment")
    summary.add_argument(
        "--configs",
        default="experiments",
        metavar="FOLDER",
        help="folder of experiment files, and of variants one folder down (default: experiments)",
    )

    summary.set_defaults(handler=run)


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    from pathlib import Path

    from rsn2.experiments.summary import write_summary

    folder = Path(args.configs)  # the experiments, then variants in subfolders (ablations/)
    configs = sorted(folder.glob("*.yaml")) + sorted(p for p in folder.glob("*/*.yaml"))
    if not configs:
        print(f"rsn2 summary: error: no experiment files (*.yaml) in {args.configs}", file=sys.stderr)
        return 2
    results_dir = Path(args.results_dir)
    if not results_dir.is_dir():
        print(f"rsn2 summary: error: {results_dir} is not a folder", file=sys.stderr)
        return 2
    print(f"wrote {write_summary(configs, results_dir)}")
    return 0
