"""Image folders: ``<split>/<class>/<image>`` in a directory or a zip; labels are the sorted class names."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rsn2.data.formats.images import decode_all
from rsn2.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


@dataclass
class ImageFolderSplit:
    """Decoded images ``(N, C, H, W)`` uint8, labels ``(N,)`` int64 and the class names (label order)."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]


def read_image_folder(
    source: Path,
    split: str | None = None,
    channels: int = 3,
    size: tuple[int, int] | None = None,
    classes: list[str] | None = None,
) -> ImageFolderSplit:
    """Read ``source/<split>/<class>/*`` (``split=None``: ``source/<class>/*``); ``source`` is a folder or zip.

    Class ids follow the sorted folder names (as ``ImageFolder`` does) unless ``classes`` fixes them.
    Images are decoded with Pillow and resized to ``size`` (W, H) when given; without ``size`` all
    images must share the first image's size.
    """
    entries, reader = _list(source)
    prefix = f"{split}/" if split else ""
    members: list[tuple[str, str]] = []
    for name in entries:
        if not name.startswith(prefix) or not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        parts = name[len(prefix) :].split("/")
        if len(parts) == 2:
            members.append((parts[0], name))
    if not members:
        raise DataError(f"{source}: no images found under '{prefix}<class>/' (expected {', '.join(IMAGE_SUFFIXES)})")
    found = sorted({c for c, _ in members})
    class_names = classes or found
    unknown = set(found) - set(class_names)
    if unknown:
        raise DataError(f"{source}: class folder(s) {sorted(unknown)} not among the expected {class_names}")
    index = {c: i for i, c in enumerate(class_names)}
    members.sort(key=lambda m: (index[m[0]], m[1]))
    if size is None:
        with Image.open(io.BytesIO(reader(members[0][1]))) as first:
            hw = (first.size[1], first.size[0])
    else:
        hw = (size[1], size[0])
    images = decode_all(((n, _BytesOf(reader, n)) for _, n in members), len(members), channels, hw, size)
    labels = np.fromiter((index[c] for c, _ in members), dtype=np.int64, count=len(members))
    return ImageFolderSplit(images, labels, class_names)


def _list(source: Path) -> tuple[list[str], Callable[[str], bytes]]:
    if source.is_dir():
        names = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
        return names, lambda n: (source / n).read_bytes()
    if source.is_file():
        try:
            archive = zipfile.ZipFile(source)
        except zipfile.BadZipFile as exc:
            raise DataError(f"{source} is neither a folder nor a readable zip: {exc}") from None
        return sorted(archive.namelist()), archive.read
    raise DataError(f"{source} does not exist")


class _BytesOf:
    def __init__(self, reader: Callable[[str], bytes], name: str) -> None:
        self.reader, self.name = reader, name

    def __call__(self) -> bytes:
        return self.reader(self.name)
