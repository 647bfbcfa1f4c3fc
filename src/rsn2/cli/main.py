"""The ``rsn2`` command: the top-level parser, and each command run from its own module.

Each command's module (:mod:`rsn2.cli.demo`, :mod:`~rsn2.cli.train`, ...) registers its parser with
``register(sub)`` and sets ``handler``: ``handler(args, argv) -> exit status``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rsn2.cli import cl, data_command, demo, export, info, predict, run, serve, summary, train
from rsn2.errors import RSN2Error
from rsn2.version import __version__

COMMANDS = (demo, info, train, predict, export, serve, run, summary, cl, data_command)
"""The modules of the commands, in the order ``rsn2 --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsn2",
        description="Many unrelated tasks in one network, each in its own disjoint subnetwork (RSN2).",
    )
    parser.add_argument("--version", action="version", version=f"rsn2 {__version__}")
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads for PyTorch (default: PyTorch's, or OMP_NUM_THREADS; the demo uses 1). Waiting threads "
        "sleep instead of spinning unless OMP_WAIT_POLICY=ACTIVE is set",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    threads = args.threads if args.threads is not None else getattr(args, "default_threads", None)
    if threads is not None:
        if threads < 1:
            print(f"rsn2: error: --threads must be >= 1, got {threads}", file=sys.stderr)
            return 2
        import torch

        torch.set_num_threads(threads)
    try:
        status: int = args.handler(args, argv)
    except RSN2Error as exc:
        print(f"rsn2 {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
