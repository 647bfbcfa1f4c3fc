"""Fetching datasets from their canonical sources: SHA-256 verified, atomic, retried, with progress."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from rsn2.data.catalog import DataFile, dataset_info
from rsn2.data.location import data_dir, sha256_file
from rsn2.errors import DataError
from rsn2.io.atomic import current_umask

MIRROR_VAR = "RSN2_MIRROR"


def download_file(
    url: str,
    target: Path,
    sha256: tuple[str, ...],
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
    backoff: float = 1.0,
) -> Path:
    """Download ``url`` to ``target`` through a temporary file; keep it only if its SHA-256 is known good.

    Transient failures (connection errors, dropped or short transfers) are retried ``retries`` times with
    exponential backoff. A checksum mismatch is not retried. ``target`` is never left half-written.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    for attempt in range(retries + 1):
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                received = 0
                with tqdm(
                    total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress, leave=False
                ) as bar:
                    while block := resp.read(1 << 20):
                        out.write(block)
                        digest.update(block)
                        received += len(block)
                        bar.update(len(block))
                if total is not None and received != total:
                    raise ConnectionError(f"connection dropped after {received} of {total} bytes")
                out.flush()
                os.fsync(out.fileno())
            actual = digest.hexdigest()
            if actual not in sha256:
                raise DataError(
                    f"{url}: downloaded file has sha256 {actual}, expected {' or '.join(sha256)}; nothing was saved"
                )
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600 would hide the data from other users
            os.replace(tmp, target)
            return target
        except DataError:
            tmp.unlink(missing_ok=True)
            raise
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            tmp.unlink(missing_ok=True)
            last = exc
            if attempt < retries:
                time.sleep(backoff * 2**attempt)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    raise DataError(f"{url}: download failed after {retries + 1} attempts: {last}")


def download_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    mirror: str | None = None,
    progress: bool = True,
    retries: int = 3,
    fetch: Callable[..., Path] = download_file,
) -> list[Path]:
    """Fetch dataset ``name``'s downloadable layout into ``<data dir>/<name>/``; skip files already verified.

    ``mirror`` (or ``$RSN2_MIRROR``) replaces each file's source by ``<mirror>/<name>/<file>``.
    Raises :class:`DataError` for a dataset with no public download (it says how to get it).
    """
    info = dataset_info(name)
    layout = next((lo for lo in info.layouts if lo.downloadable), None)
    if layout is None:
        raise DataError(f"dataset {name!r} cannot be downloaded automatically. {info.manual or ''}".strip())
    folder = data_dir(root) / info.name
    mirror = mirror or os.environ.get(MIRROR_VAR)
    paths = []
    for f in layout.files:
        target = folder / f.name
        if target.is_file() and sha256_file(target) in f.sha256:
            paths.append(target)
            continue
        paths.append(fetch(_source(f, info.name, mirror), target, f.sha256, retries=retries, progress=progress))
    return paths


def _source(f: DataFile, dataset: str, mirror: str | None) -> str:
    if mirror:
        return f"{mirror.rstrip('/')}/{dataset}/{f.name}"
    assert f.url is not None
    return f.url
