"""Atomic file writes: a reader sees the old file or the complete new one, never a half-written one.

The bytes go to a temporary file beside the target, named ``.<target>.<pid>.<random>.rsn2-partial``,
which is fsynced and renamed over the target. A process killed mid-write leaves its partial file
behind; the next write into that folder removes every partial file whose process is gone.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from rsn2.errors import ModelFileError

SUFFIX = ".rsn2-partial"
_PARTIAL = re.compile(r"^\..+\.(\d+)\.[^.]+" + re.escape(SUFFIX) + r"$")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync, then rename."""
    target = Path(path)
    if target.is_dir():
        raise ModelFileError(f"{target} is a directory; give a file path such as {target / 'model.safetensors'}")
    if not target.parent.is_dir():
        raise ModelFileError(f"folder {target.parent} does not exist; create it first")
    remove_abandoned_partials(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=SUFFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)


def remove_abandoned_partials(folder: Path) -> list[Path]:
    """Delete the partial files in ``folder`` whose writing process no longer runs; returns them."""
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _PARTIAL.match(entry.name)
        if match and not _alive(int(match.group(1))):
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _fsync_folder(folder: Path) -> None:
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
