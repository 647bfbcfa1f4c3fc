"""Where datasets live: ``--data-dir``, else ``$RSN2_DATA``, else a per-user cache folder."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from rsn2.data.catalog import DatasetInfo, Layout, dataset_info
from rsn2.data.formats.omniglot import content_sha256
from rsn2.errors import DataError

ENV_VAR = "RSN2_DATA"


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``explicit``, else ``$RSN2_DATA``, else ``$XDG_CACHE_HOME/rsn2/data``
    (``~/.cache/rsn2/data``). Each dataset is a sub-folder named as in the catalog."""
    if explicit is not None:
        return Path(explicit).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "rsn2" / "data"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks (constant memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Located:
    """A dataset found on disk: its folder and the layout whose files are all present."""

    info: DatasetInfo
    folder: Path
    layout: Layout

    def path(self, name: str) -> Path:
        return self.folder / name

    def verify(self) -> None:
        """Raise :class:`DataError` naming the first file whose SHA-256 is not a known good one (or,
        for a layout checked by content, when what the files hold is not the known content)."""
        if self.layout.content_sha256 is not None:
            actual = content_sha256([self.path(f.name) for f in self.layout.files])
            if actual != self.layout.content_sha256:
                raise DataError(
                    f"{self.folder} does not hold the known {self.info.title} images (content sha256 {actual}, "
                    f"expected {self.layout.content_sha256}); {self.info.manual or 'replace the files'}"
                )
            return
        for f in self.layout.files:
            actual = sha256_file(self.path(f.name))
            if actual not in f.sha256:
                raise DataError(
                    f"{self.path(f.name)} is corrupt or truncated: sha256 {actual} does not match the expected "
                    f"{' or '.join(f.sha256)}; delete it and run `rsn2 data download {self.info.name}`"
                )


def locate(name: str, root: str | os.PathLike[str] | None = None, verify: bool = True) -> Located:
    """Find dataset ``name`` under the data directory (first complete layout wins), verifying checksums.

    Raises:
        DataError: no complete layout is present (the message lists the files expected where and how
            to get them) or a file fails its checksum.
    """
    info = dataset_info(name)
    folder = data_dir(root) / info.name
    for layout in info.layouts:
        present = (
            (folder / layout.directory).is_dir()
            if layout.directory
            else all((folder / f.name).is_file() for f in layout.files)
        )
        if present:
            found = Located(info, folder, layout)
            if verify:
                found.verify()
            return found
    options = "; or ".join(
        f"a folder {layout.directory}/" if layout.directory else ", ".join(f.name for f in layout.files)
        for layout in info.layouts
    )
    how = (
        f"run `rsn2 data download {name}`"
        if any(lo.downloadable for lo in info.layouts)
        else info.manual or "copy the files there"
    )
    raise DataError(
        f"dataset {name!r} not found in {folder}: expected {options}. To get it, {how} "
        f"(data directory: --data-dir, else ${ENV_VAR}, else {data_dir(None) if root is None else 'the default'})."
    )
