"""Omniglot: one-bit PNGs ``images_<part>/<Alphabet>/characterNN/<id>_<drawer>.png`` in zips or folders."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rsn2.errors import DataError

PARTS = ("images_background", "images_evaluation")
"""The two halves of Omniglot, in the order their characters are numbered (background first)."""


@dataclass
class Characters:
    """Every drawing, grouped by character.

    Attributes:
        images: ``(characters, drawings, size, size)`` uint8 grey levels (255 background), characters
            in path order (background alphabets, then evaluation ones; alphabets and characters
            sorted by name), drawings sorted by file name.
        names: ``<part>/<Alphabet>/characterNN`` per character.
        content_sha256: SHA-256 of the lines ``<sha256 of the PNG>  <path>`` sorted by path: what the
            PNGs hold, however they are packed.
    """

    images: np.ndarray
    names: list[str]
    content_sha256: str


def read_omniglot(sources: dict[str, Path], size: int) -> Characters:
    """Read both parts (``{part: zip file or folder holding <part>/...}``), each PNG as Pillow's
    greyscale (``convert("L")``) resized to ``size`` x ``size`` with its default (bicubic) filter.

    Raises:
        DataError: a part is missing, a PNG does not decode, or characters hold different numbers of drawings.
    """
    files: dict[str, bytes] = {}
    for part in PARTS:
        source = sources.get(part)
        if source is None:
            raise DataError(f"Omniglot part {part!r} is missing")
        files.update(_png_files(source, part))
    groups: dict[str, list[str]] = {}
    for path in sorted(files):
        groups.setdefault(path.rsplit("/", 1)[0], []).append(path)
    counts = {len(v) for v in groups.values()}
    if len(counts) != 1:
        raise DataError(f"Omniglot characters hold different numbers of drawings: {sorted(counts)}")
    names = sorted(groups, key=lambda n: (PARTS.index(n.split("/", 1)[0]), n))
    images = np.stack([np.stack([_decode(files[p], p, size) for p in groups[n]]) for n in names])
    return Characters(images, names, _digest(files))


def content_sha256(archives: list[Path]) -> str:
    """The content digest of Omniglot zips or folders (see :attr:`Characters.content_sha256`), without
    decoding any image."""
    files: dict[str, bytes] = {}
    for source, part in zip(archives, PARTS, strict=True):
        files.update(_png_files(source, part))
    return _digest(files)


def _digest(files: dict[str, bytes]) -> str:
    lines = [f"{hashlib.sha256(files[path]).hexdigest()}  {path}" for path in sorted(files)]
    return hashlib.sha256(("\n".join(lines) + "\n").encode()).hexdigest()


def _png_files(source: Path, part: str) -> dict[str, bytes]:
    """``{path: PNG bytes}`` of one part, paths as ``<part>/<Alphabet>/<character>/<file>.png``."""
    if source.is_dir():
        root = source / part
        if not root.is_dir():
            raise DataError(f"{source} has no folder {part}/")
        return {p.relative_to(source).as_posix(): p.read_bytes() for p in root.rglob("*.png") if p.is_file()}
    try:
        with zipfile.ZipFile(source) as archive:
            return {n: archive.read(n) for n in archive.namelist() if n.startswith(f"{part}/") and n.endswith(".png")}
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{source} is not a readable zip file: {exc}") from None


def _decode(data: bytes, path: str, size: int) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("L").resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"Omniglot image {path} does not decode: {exc}") from None
