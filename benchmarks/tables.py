"""Markdown tables of the stand-alone comparisons, written under the command that made them."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsn2.devices import cpu_name
from rsn2.errors import RSN2Error
from rsn2.io import atomic_write_bytes


def write_table(out: Path | None, module: str, argv: list[str], table: str) -> None:
    """Write ``table`` to ``out`` (nothing when ``None``), first line the exact command
    ``python -m <module> <argv>``; atomic, so an interrupted run leaves the old file whole."""
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, f"Command: `python -m {module} {' '.join(argv)}`\n\n{table}".encode())


def machine_line() -> str:
    """``Machine: <CPU>, <n> cores, torch <version>``: how every benchmark table starts."""
    import os

    import torch

    return f"Machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}"


def publish_table(out: Path | None, module: str, argv: list[str] | None, table: str) -> None:
    """Print ``table`` and write it to ``out`` (see :func:`write_table`); ``argv`` None: this process's."""
    print(table)
    write_table(out, module, list(argv if argv is not None else sys.argv[1:]), table)


def markdown_table(rows: list[dict[str, Any]], keys: list[str]) -> str:
    """A Markdown table of ``rows`` with the columns ``keys`` (floats to 3 significant digits)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return f"{v:,}" if isinstance(v, int) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def print_and_write(make_table: Callable[[], str], out: Path | None, module: str, argv: list[str]) -> int:
    """Run ``make_table``, print its table and write it (see :func:`write_table`); exit status 0.

    rsn2's own errors (a bad experiment file, missing data) print ``error: ...`` without a traceback
    and give exit status 2, and nothing is written."""
    try:
        table = make_table()
    except RSN2Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table, end="")
    write_table(out, module, argv, table)
    return 0
