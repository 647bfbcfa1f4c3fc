"""Atomic file writes: a reader sees the old file or the complete new one, never a half-written one.

The bytes go to a temporary file beside the target, named ``.<target>.<pid>.<random>.rsn2-partial``,
which is fsynced, given the mode a new file gets under the process's umask (as ``open`` would give
it: ``0o666 & ~umask``), and renamed over the target. A process killed mid-write leaves its partial
file behind; the next write into that folder removes every partial file whose process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from rsn2.errors import ModelFileError

SUFFIX = ".rsn2-partial"
_PARTIAL = re.compile(r"^\..+\.(\d+)\.[^.]+" + re.escape(SUFFIX) + r"$")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync, then rename."""
    with atomic_target(path) as tmp, tmp.open("wb") as f:
        f.write(data)


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` to write the whole file to; when the block ends normally the
    file is fsynced, given the umask's mode and renamed over ``path``. If the block raises, the
    temporary file is removed and ``path`` is left as it was."""
    target = Path(path)
    if target.is_dir():
        raise ModelFileError(f"{target} is a directory; give a file path such as {target / 'model.safetensors'}")
    if not target.parent.is_dir():
        raise ModelFileError(f"folder {target.parent} does not exist; create it first")
    remove_abandoned_partials(target.parent)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=SUFFIX, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask (read from ``/proc`` where it shows it, else set and restored under a lock)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


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
