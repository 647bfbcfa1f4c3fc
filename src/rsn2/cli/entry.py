"""The ``rsn2`` command's entry point: the process settings first, then the command."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Make :func:`rsn2.process.configure_process`'s settings before anything imports torch or Numba,
    then run :func:`rsn2.cli.main.main`."""
    from rsn2.process import configure_process

    configure_process()
    from rsn2.cli.main import main as run

    return run(argv)
