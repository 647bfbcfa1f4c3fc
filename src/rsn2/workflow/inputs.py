"""How a task turns its files into tensors: fitted on the training data, stored in the model file, and
applied again by ``rsn2 predict`` so that a prediction sees its input exactly as training did."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsn2.data.formats.image_folder import IMAGE_SUFFIXES, read_image_folder
from rsn2.data.formats.images import decode_all
from rsn2.data.text import Vocabulary
from rsn2.errors import DataError


@dataclass(frozen=True)
class TabularInput:
    """Feature vectors (CSV columns or array rows), min-max scaled with the training data's ranges.

    ``columns``: the CSV feature columns in order (None for arrays). ``low``/``high``: per feature.
    """

    columns: list[str] | None
    low: list[float]
    high: list[float]
    kind: str = "tabular"

    @classmethod
    def fit(cls, x: np.ndarray, columns: list[str] | None) -> TabularInput:
        flat = x.reshape(len(x), -1)
        return cls(columns, flat.min(axis=0).tolist(), flat.max(axis=0).tolist())

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (len(self.low),)

    def transform(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1).astype(np.float64)
        if flat.shape[1] != len(self.low):
            raise DataError(f"expected {len(self.low)} features per sample, got {flat.shape[1]}")
        low, high = np.asarray(self.low), np.asarray(self.high)
        span = np.where(high > low, high - low, 1.0)
        return ((flat - low) / span).astype(np.float32)


@dataclass(frozen=True)
class ImageInput:
    """Images decoded to ``channels`` (1 grey, 3 RGB), resized to ``width`` x ``height``, scaled to [0, 1]."""

    channels: int
    height: int
    width: int
    kind: str = "images"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.channels, self.height, self.width)

    def transform(self, images: np.ndarray) -> np.ndarray:
        return (images.astype(np.float32) / 255.0).reshape(len(images), *self.input_shape)


@dataclass(frozen=True)
class TextInput:
    """Text (a JSON Lines field) as ``length`` word ids over the training data's vocabulary."""

    field: str
    words: list[str]
    length: int
    kind: str = "text"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.length,)

    @property
    def num_embeddings(self) -> int:
        return len(self.words) + 2

    def transform(self, texts: list[str]) -> np.ndarray:
        return Vocabulary(tuple(self.words)).encode(texts, self.length)


TaskInput = TabularInput | ImageInput | TextInput


def input_to_dict(inp: TaskInput) -> dict[str, Any]:
    return asdict(inp)


def input_from_dict(data: dict[str, Any]) -> TaskInput:
    """The stored input of a task (from a model file's metadata)."""
    kinds: dict[str, type[TabularInput] | type[ImageInput] | type[TextInput]] = {
        "tabular": TabularInput,
        "images": ImageInput,
        "text": TextInput,
    }
    try:
        return kinds[data["kind"]](**{k: v for k, v in data.items() if k not in ("kind", "target_range")})
    except (KeyError, TypeError) as exc:
        raise DataError(f"the model file's input description is malformed: {exc!r}") from None


def read_prediction_input(inp: TaskInput, path: Path) -> tuple[np.ndarray, list[str]]:
    """The samples of ``path`` for a task with input ``inp``, preprocessed, and a name per sample.

    CSV (the stored feature columns, by name), ``.npy`` (rows), an image file or a folder of images,
    or JSON Lines (the stored text field).
    """
    if not path.exists():
        raise DataError(f"no input at {path}")
    suffix = path.suffix.lower()
    if isinstance(inp, TabularInput):
        if suffix == ".csv":
            rows = read_csv_rows(path)
            x = numeric_columns(rows, inp.columns or list(rows[0]) if rows else [], path)
        elif suffix == ".npy":
            x = np.load(path, allow_pickle=False)
        else:
            raise DataError(f"{path}: a tabular task reads .csv or .npy input, got {suffix or 'no suffix'}")
        return inp.transform(np.asarray(x, dtype=np.float64).reshape(len(x), -1)), [str(i) for i in range(len(x))]
    if isinstance(inp, ImageInput):
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
        if not files or any(p.suffix.lower() not in IMAGE_SUFFIXES for p in files):
            raise DataError(
                f"{path}: an image task reads an image file or a folder of images ({', '.join(IMAGE_SUFFIXES)})"
            )
        images = decode_all(
            ((p.name, p.read_bytes) for p in files),
            len(files),
            inp.channels,
            (inp.height, inp.width),
            (inp.width, inp.height),
        )
        return inp.transform(images), [p.name for p in files]
    if suffix != ".jsonl":
        raise DataError(f"{path}: a text task reads a .jsonl file with a {inp.field!r} field")
    texts = [str(r[inp.field]) for r in read_jsonl(path, [inp.field])]
    return inp.transform(texts), [str(i) for i in range(len(texts))]


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
                record = json.loads(line)
                if not isinstance(record, dict) or any(k not in record for k in fields):
                    raise DataError(f"{path}: line {n} is not an object with field(s) {fields}")
                records.append(record)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not a readable JSON Lines file: {exc}") from None
    if not records:
        raise DataError(f"{path} has no records")
    return records


def read_images(path: Path, channels: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """An image folder (one folder per class): ``(N, C, H, W)`` uint8 images, labels and class names."""
    split = read_image_folder(path, channels=channels, size=size)
    return split.images, split.labels, split.classes
