"""Entry point of the ``rsn2`` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rsn2 import __version__
from rsn2.errors import RSN2Error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsn2",
        description="Many unrelated tasks in one network, each in its own disjoint subnetwork (RSN2).",
    )
    parser.add_argument("--version", action="version", version=f"rsn2 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    demo.add_argument("--progress", action="store_true", help="show progress bars while training")

    info = sub.add_parser(
        "info",
        help="show a model file's tasks, per-layer ownership and free capacity; verifies integrity",
        description="Load MODEL, re-verify shapes, ownership and checksums, and describe it. Exits with status 1 "
        "and the reason if the file fails verification.",
    )
    info.add_argument("model", metavar="MODEL", help="path of an rsn2 .safetensors model file")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from rsn2.demo import format_report, run_demo

            report = run_demo(seed=args.seed, save=args.save, progress=args.progress)
            print(json.dumps(report, indent=2) if args.json else format_report(report))
        elif args.command == "info":
            from rsn2.cli.info import format_info, model_info

            info = model_info(args.model)
            print(json.dumps(info, indent=2) if args.json else format_info(info))
    except RSN2Error as exc:
        print(f"rsn2 {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
