"""UTKFace: JPEGs named ``<age>_<gender>_<race>_<datetime>.jpg.chip.jpg`` in a folder or a zip."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from rsn2.data.formats.images import decode_all
from rsn2.errors import DataError


@dataclass
class Faces:
    """Images ``(N, 3, H, W)`` uint8 and per-sample age (years), gender (0 male, 1 female), race (0..4)."""

    images: np.ndarray
    age: np.ndarray
    gender: np.ndarray
    race: np.ndarray
    names: list[str]


def parse_name(name: str) -> tuple[int, int, int] | None:
    """(age, gender, race) from a UTKFace file name, or None if the name lacks a label."""
    fields = PurePosixPath(name).name.split("_")
    if len(fields) < 4:
        return None
    try:
        age, gender, race = int(fields[0]), int(fields[1]), int(fields[2])
    except ValueError:
        return None
    if not (0 <= age <= 130 and gender in (0, 1) and 0 <= race <= 4):
        return None
    return age, gender, race


def read_utkface(source: Path, size: tuple[int, int] | None = None) -> Faces:
    """Read every fully labelled face in ``source`` (folder or zip), sorted by name, resized to ``size``."""
    if source.is_dir():
        names = sorted(p.relative_to(source).as_posix() for p in source.rglob("*.jpg") if p.is_file())

        read: Callable[[str], bytes] = partial(_read_file, source)
    elif source.is_file():
        try:
            archive = zipfile.ZipFile(source)
        except zipfile.BadZipFile as exc:
            raise DataError(f"{source} is neither a folder nor a readable zip: {exc}") from None
        names = sorted(n for n in archive.namelist() if n.lower().endswith(".jpg"))
        read = archive.read
    else:
        raise DataError(f"{source} does not exist")
    labelled = [(n, lab) for n in names if (lab := parse_name(n)) is not None]
    if not labelled:
        raise DataError(f"{source}: no JPEGs named <age>_<gender>_<race>_<datetime>.jpg found")
    if size is None:
        import io

        with Image.open(io.BytesIO(read(labelled[0][0]))) as first:
            hw = (first.size[1], first.size[0])
    else:
        hw = (size[1], size[0])
    images = decode_all(((n, partial(read, n)) for n, _ in labelled), len(labelled), 3, hw, size, Image.Resampling.BOX)
    labels = np.asarray([lab for _, lab in labelled], dtype=np.int64)
    return Faces(images, labels[:, 0], labels[:, 1], labels[:, 2], [n for n, _ in labelled])


def _read_file(folder: Path, name: str) -> bytes:
    return (folder / name).read_bytes()
