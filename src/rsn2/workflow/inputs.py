"""Reading a task's files into raw samples: for training (labels and class folders) and for ``rsn2
predict`` (the samples alone). What is done to the raw samples is :mod:`rsn2.preprocessing`'s job."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from rsn2.data.formats.image_folder import IMAGE_SUFFIXES, read_image_folder
from rsn2.errors import DataError
from rsn2.preprocessing.inputs import ImageInput, TabularInput, TaskInput, TensorInput, TextInput


def read_prediction_input(inp: TaskInput, path: Path) -> tuple[Any, list[str]]:
    """The raw samples of ``path`` for a task with input ``inp`` (what its ``prepare`` takes: images as
    their decoded ``(N, C, H, W)`` pixels) and a name per sample.

    CSV (the stored feature columns, by name) or ``.npy`` (rows) for tabular and tensor inputs; an
    image file, or a folder of images (directly in it, or in one subfolder per class as in training:
    named ``class/file``); JSON Lines (the stored text field).
    """
    if not path.exists():
        raise DataError(f"no input at {path}")
    suffix = path.suffix.lower()
    if isinstance(inp, ImageInput):  # decoded here, so that an unreadable image is named by its file
        files = _image_files(path)
        names = [p.relative_to(path).as_posix() if path.is_dir() else p.name for p in files]
        return inp.decode([p.read_bytes() for p in files], names), names
    if isinstance(inp, TextInput):
        if suffix != ".jsonl":
            raise DataError(f"{path}: a text task reads a .jsonl file with a {inp.field!r} field")
        texts = [str(r[inp.field]) for r in read_jsonl(path, [inp.field])]
        return texts, [str(i) for i in range(len(texts))]
    if suffix == ".csv" and isinstance(inp, TabularInput):
        rows = read_csv_rows(path)
        x = numeric_columns(rows, inp.columns or list(rows[0]), path)
    elif suffix == ".npy":
        try:
            x = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path} is not a readable .npy file: {exc}") from None
    else:
        allowed = ".csv or .npy" if isinstance(inp, TabularInput) else ".npy"
        raise DataError(f"{path}: a {inp.kind} task reads {allowed} input, got {suffix or 'no suffix'}")
    if isinstance(inp, TabularInput):
        x = np.asarray(x).reshape(len(x), -1)
    if isinstance(inp, TensorInput) and x.ndim == len(inp.shape):
        x = x[None]
    return x, [str(i) for i in range(len(x))]


def _image_files(path: Path) -> list[Path]:
    """``path`` itself, or the images in folder ``path`` and in its subfolders (one level: the class
    folders of a training layout), sorted."""
    allowed = ", ".join(IMAGE_SUFFIXES)
    if not path.is_dir():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"{path}: an image task reads an image file ({allowed}) or a folder of them")
        return [path]
    files = sorted(
        p
        for p in [*path.iterdir(), *(q for d in path.iterdir() if d.is_dir() for q in d.iterdir())]
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise DataError(
            f"{path}: no images ({allowed}) in the folder or in its subfolders (one level deep, as the class "
            "folders of training data)"
        )
    return files


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header line."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} is not a readable CSV file: {exc}") from None
    if not rows:
        raise DataError(f"{path} has no data rows")
    return rows


def numeric_columns(rows: list[dict[str, str]], columns: list[str], path: Path) -> np.ndarray:
    """``(len(rows), len(columns))`` floats; names a missing column (listing those that exist) or a
    value that is not a number."""
    present = list(rows[0])
    missing = [c for c in columns if c not in present]
    if missing:
        raise DataError(f"{path}: no column(s) {missing}; the columns are {present}")
    out = np.empty((len(rows), len(columns)), dtype=np.float64)
    for i, row in enumerate(rows):
        for j, c in enumerate(columns):
            try:
                out[i, j] = float(row[c])
            except (TypeError, ValueError):
                raise DataError(f"{path}: row {i + 2}, column {c!r}: {row[c]!r} is not a number") from None
    if not np.isfinite(out).all():
        raise DataError(f"{path}: the feature columns hold NaN or infinite values")
    return out


def read_jsonl(path: Path, fields: list[str]) -> list[dict[str, Any]]:
    """The records of a JSON Lines file, each checked to have ``fields``."""
    records = []
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"{path}: line {n} is not valid JSON ({exc.msg} at character {exc.colno}); JSON Lines "
                        "holds one JSON object per line"
                    ) from None
                if not isinstance(record, dict) or any(k not in record for k in fields):
                    raise DataError(f"{path}: line {n} is not an object with field(s) {fields}")
                records.append(record)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a readable JSON Lines file: {exc}") from None
    if not records:
        raise DataError(f"{path} has no records")
    return records


def read_images(path: Path, channels: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """An image folder (one folder per class): ``(N, C, H, W)`` uint8 images, labels and class names."""
    split = read_image_folder(path, channels=channels, size=size)
    return split.images, split.labels, split.classes
