"""Options several ``rsn2`` commands take, and their parsing."""

from __future__ import annotations

import argparse
from typing import Any


def data_dir_option(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``, as every command that reads the standard datasets takes it."""
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (default: $RSN2_DATA or ~/.cache/rsn2/data)")


def values_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--values float32 | bfloat16``; ``what`` says what the values are for."""
    from rsn2.inference.values import VALUE_DTYPES

    parser.add_argument(
        "--values",
        default="float32",
        choices=VALUE_DTYPES,
        help=f"{what} as float32 or rounded to bfloat16 (half the bytes per value, sums still in float32; "
        "the accuracy change per experiment: docs/performance.md, 'Reduced precision'; default %(default)s)",
    )


def factory_option(parser: argparse.ArgumentParser) -> None:
    """``--factory MODULE:CALLABLE`` for models made from the user's own module."""
    parser.add_argument(
        "--factory",
        metavar="MODULE:CALLABLE",
        help="for a model made from your own nn.Module by rsn2.multitask: the function that builds a fresh "
        "instance of it (package.module:callable, imported from the current folder first); the model file "
        "never names code to import",
    )


def body(args: argparse.Namespace) -> Any:
    """The fresh user module ``--factory`` builds, or None."""
    if args.factory is None:
        return None
    from rsn2.network.factory import module_from_factory

    return module_from_factory(args.factory)


def dense_budget(text: str) -> float | None:
    """``--dense-budget``: a number >= 0, or ``none``."""
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'none', got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'none', got {text!r}")
    return value
