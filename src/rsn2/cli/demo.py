"""``rsn2 demo``: three scikit-learn tasks in one network, with dense controls."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the command's parser to ``sub``."""
    demo = sub.add_parser(
        "demo",
        help="train digits + wine together, then diabetes, with dense controls (no download)",
        description="Three unrelated scikit-learn tasks in one network: digits (10 classes) and wine (3 classes) "
        "trained together, then diabetes regression as a later stage, each with a dense control. Prints per task "
        "the multitask and control test metric, the metric before and after the later stage, the kept fraction, "
        "and the model file size next to one dense model and the sum of the controls.",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of splits, initialisation and batch order (default 0)")
    demo.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    demo.add_argument("--save", metavar="PATH", help="also write the trained multitask model to PATH (.safetensors)")
    demo.add_argument(
        "--progress", action="store_true", help="progress bars while training (default: one line per epoch on stderr)"
    )

    demo.set_defaults(handler=run, default_threads=1)  # small models: one thread is fastest


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    from rsn2.experiments.demo import format_report, run_demo

    report = run_demo(seed=args.seed, save=args.save, progress=True if args.progress else "lines")
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
