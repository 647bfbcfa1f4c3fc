"""Markdown tables of the stand-alone comparisons, written under the command that made them."""

from __future__ import annotations

from pathlib import Path

from rsn2.io import atomic_write_bytes


def write_table(out: Path | None, module: str, argv: list[str], table: str) -> None:
    """Write ``table`` to ``out`` (nothing when ``None``), first line the exact command
    ``python -m <module> <argv>``; atomic, so an interrupted run leaves the old file whole."""
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, f"Command: `python -m {module} {' '.join(argv)}`\n\n{table}".encode())
