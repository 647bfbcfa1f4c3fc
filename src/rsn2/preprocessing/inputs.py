"""How a raw input becomes a task's input tensor: fitted on the training data, stored in the model file.

Each input kind names the raw inputs it takes (:class:`IOField`, the names ``rsn2 serve`` and the ONNX
file use) and turns them into the network's input with :meth:`prepare` (from Python values) or
:meth:`prepare_named` (from named arrays, as a server receives them). Every malformed input raises
:class:`~rsn2.errors.DataError` saying what was wrong and what the task takes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np

from rsn2.data.formats.images import decode_all
from rsn2.data.text import OOV, PAD, TOKEN_PATTERN, Vocabulary
from rsn2.errors import DataError

FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class IOField:
    """A named raw input or output: its Open Inference Protocol datatype and shape (-1: the batch axis)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def _numbers(raw: Any, what: str) -> np.ndarray:
    """``raw`` as a float64 array of finite numbers (a DataError otherwise)."""
    try:
        x = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be numbers") from None
    if not np.isfinite(x).all():
        raise DataError(f"{what} hold NaN or infinite values")
    return x


def _listed(raw: Any) -> Any:
    """A NumPy array of strings or bytes (as OIP clients hold BYTES tensors) as a flat list; else ``raw``."""
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "OUS":
        return raw.ravel().tolist()
    return raw


def _only(named: Mapping[str, Any], fields: list[IOField], task_takes: str) -> tuple[str, Any]:
    """The one input of ``named``, which must be one of ``fields``."""
    allowed = [f.name for f in fields]
    if len(named) != 1 or next(iter(named)) not in allowed:
        raise DataError(f"{task_takes}; got input(s) {sorted(named)}")
    return next(iter(named.items()))


@dataclass(frozen=True)
class TabularInput:
    """Feature vectors (CSV columns or array rows), min-max scaled with the training data's ranges.

    ``columns``: the CSV feature columns in order (None for arrays). ``low``/``high``: per feature.
    Raw input: ``(N, F)`` numbers in the training column order, or (when the columns have names) one
    value per column by name.
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

    @property
    def span(self) -> np.ndarray:
        """``high - low`` per feature (1 where a feature was constant in training)."""
        low, high = np.asarray(self.low), np.asarray(self.high)
        return np.where(high > low, high - low, 1.0)

    def raw_fields(self) -> list[IOField]:
        return [IOField("features", "FP32", (-1, len(self.low)))]

    def transform(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1).astype(np.float64)
        if flat.shape[1] != len(self.low):
            raise DataError(f"expected {len(self.low)} features per sample, got {flat.shape[1]}")
        return ((flat - np.asarray(self.low)) / self.span).astype(np.float32)

    def prepare(self, raw: Any) -> np.ndarray:
        """``(N, F)`` numbers (one row per sample, or a single row), or a list of mappings column -> value."""
        if isinstance(raw, Sequence) and raw and all(isinstance(r, Mapping) for r in raw):
            return self.transform(self._by_column(raw))
        x = _numbers(raw, "features")
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != len(self.low) or len(x) < 1:
            raise DataError(f"{self._takes()}; got an array of shape {list(x.shape)}")
        return self.transform(x)

    def prepare_named(self, named: Mapping[str, Any]) -> np.ndarray:
        """``{"features": (N, F)}``, or one ``(N,)`` array per column name."""
        if self.columns and "features" not in named:
            unknown = sorted(set(named) - set(self.columns))
            missing = [c for c in self.columns if c not in named]
            if unknown or missing:
                raise DataError(f"{self._takes()}; unknown input(s) {unknown}, missing column(s) {missing}")
            cols = [_numbers(named[c], f"column {c!r}").reshape(-1) for c in self.columns]
            if len({len(c) for c in cols}) != 1:
                raise DataError(f"the columns hold different numbers of rows: {[len(c) for c in cols]}")
            return self.transform(np.stack(cols, axis=1))
        _only(named, self.raw_fields(), self._takes())
        x = _numbers(named["features"], "features")
        if x.ndim != 2 or x.shape[1] != len(self.low):
            raise DataError(f"{self._takes()}; got shape {list(x.shape)}")
        return self.transform(x)

    def _by_column(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        if not self.columns:
            raise DataError("this task was trained on unnamed features: give (N, F) numbers, not rows by column name")
        missing = sorted({c for r in rows for c in self.columns if c not in r})
        if missing:
            raise DataError(f"rows miss column(s) {missing}; the task's columns are {self.columns}")
        return _numbers([[r[c] for c in self.columns] for r in rows], "features")

    def _takes(self) -> str:
        n = len(self.low)
        named = f" or one input per column {self.columns}" if self.columns else ""
        return f"the task takes 'features' FP32 [n, {n}] (raw values in the training column order){named}"


@dataclass(frozen=True)
class ImageInput:
    """Images decoded to ``channels`` (1 grey, 3 RGB), resized to ``width`` x ``height``, scaled to [0, 1].

    Raw input: encoded image files (bytes: PNG, JPEG, ...), or pixels ``(N, C, H, W)`` in 0-255 at the
    training size.
    """

    channels: int
    height: int
    width: int
    kind: str = "images"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.channels, self.height, self.width)

    def raw_fields(self) -> list[IOField]:
        return [IOField("image", "BYTES", (-1,)), IOField("pixels", "UINT8", (-1, *self.input_shape))]

    def transform(self, images: np.ndarray) -> np.ndarray:
        return (images.astype(np.float32) / 255.0).reshape(len(images), *self.input_shape)

    def decode(self, blobs: Sequence[bytes], names: Sequence[str] | None = None) -> np.ndarray:
        """``(N, C, H, W)`` uint8 pixels of encoded images, converted and resized as in training."""
        labels = list(names) if names is not None else [f"image {i}" for i in range(len(blobs))]
        return decode_all(
            ((label, _reader(b)) for label, b in zip(labels, blobs, strict=True)),
            len(blobs),
            self.channels,
            (self.height, self.width),
            (self.width, self.height),
        )

    def prepare(self, raw: Any) -> np.ndarray:
        """A list of encoded images (bytes), or pixels ``(N, C, H, W)`` (or one ``(C, H, W)``) in 0-255."""
        raw = _listed(raw)
        if isinstance(raw, bytes | bytearray):
            raw = [raw]
        if isinstance(raw, Sequence) and raw and all(isinstance(b, bytes | bytearray) for b in raw):
            return self.transform(self.decode(raw))
        return self.transform(self._pixels(raw))

    def prepare_named(self, named: Mapping[str, Any]) -> np.ndarray:
        """``{"image": [bytes, ...]}`` or ``{"pixels": (N, C, H, W)}``."""
        name, value = _only(named, self.raw_fields(), self._takes())
        if name == "image":
            if not all(isinstance(b, bytes | bytearray) for b in value):
                raise DataError("'image' holds encoded image files (BYTES; base64 strings in JSON)")
            return self.transform(self.decode(value))
        return self.transform(self._pixels(value))

    def _pixels(self, raw: Any) -> np.ndarray:
        x = _numbers(raw, "pixels")
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise DataError(f"{self._takes()}; got pixels of shape {list(x.shape)}")
        if x.min(initial=0.0) < 0 or x.max(initial=0.0) > 255:
            raise DataError("pixels must lie in 0-255")
        return x

    def _takes(self) -> str:
        c, h, w = self.input_shape
        return (
            f"the task takes 'image' BYTES [n] (encoded image files, any size: converted to {c} channel(s) and "
            f"resized to {w}x{h}) or 'pixels' UINT8 [n, {c}, {h}, {w}] in 0-255"
        )


def _reader(blob: bytes | bytearray) -> Callable[[], bytes]:
    return lambda: bytes(blob)


@dataclass(frozen=True)
class TextInput:
    """Text (a JSON Lines field) as ``length`` word ids over the training data's vocabulary.

    Raw input: strings. The token rule (:meth:`token_rule`) is stored with the model and the ONNX file.
    """

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

    def raw_fields(self) -> list[IOField]:
        return [IOField("text", "BYTES", (-1,))]

    @cached_property
    def vocabulary(self) -> Vocabulary:
        """The stored words as a :class:`Vocabulary` (its index built once, not per request)."""
        return Vocabulary(tuple(self.words))

    def transform(self, texts: list[str]) -> np.ndarray:
        return self.vocabulary.encode(texts, self.length)

    def prepare(self, raw: Any) -> np.ndarray:
        """A list of strings (or one string)."""
        raw = _listed(raw)
        texts = [raw] if isinstance(raw, str | bytes) else raw
        if not isinstance(texts, Sequence) or not texts:
            raise DataError(f"{self._takes()}; got {type(raw).__name__}")
        return self.transform([self._text(t) for t in texts])

    def prepare_named(self, named: Mapping[str, Any]) -> np.ndarray:
        """``{"text": [str or UTF-8 bytes, ...]}``."""
        _, value = _only(named, self.raw_fields(), self._takes())
        return self.prepare(list(value))

    def token_rule(self) -> dict[str, Any]:
        """How text becomes ids, as data (what the ONNX file's metadata holds): lower-case, replace
        ``<br />`` by a space, take the matches of ``pattern`` as words, map each to ``first_word_id`` +
        its index in ``words`` (``oov_id`` if absent), keep the first ``length``, pad with ``pad_id``."""
        return {
            "lowercase": True,
            "replace": {"<br />": " "},
            "pattern": TOKEN_PATTERN,
            "pad_id": PAD,
            "oov_id": OOV,
            "first_word_id": 2,
            "length": self.length,
            "words": list(self.words),
        }

    @staticmethod
    def _text(t: Any) -> str:
        if isinstance(t, bytes | bytearray):
            try:
                return bytes(t).decode("utf-8")
            except UnicodeDecodeError:
                raise DataError("text must be UTF-8") from None
        if not isinstance(t, str):
            raise DataError(f"text must be strings, got {type(t).__name__}")
        return t

    def _takes(self) -> str:
        return "the task takes 'text' BYTES [n] (strings)"


@dataclass(frozen=True)
class TensorInput:
    """The network's input tensor as it is: for tasks trained from Python (no stored preprocessing).

    ``datatype`` ``"FP32"`` (features) or ``"INT64"`` (token ids below ``num_embeddings``).
    """

    shape: tuple[int, ...]
    datatype: str = "FP32"
    num_embeddings: int | None = None
    kind: str = "tensor"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.shape

    def raw_fields(self) -> list[IOField]:
        return [IOField("input", self.datatype, (-1, *self.shape))]

    def prepare(self, raw: Any) -> np.ndarray:
        x = _numbers(raw, "input data")
        if x.ndim == len(self.shape):
            x = x[None]
        if tuple(x.shape[1:]) != self.shape or len(x) < 1:
            raise DataError(f"{self._takes()}; got shape {list(x.shape)}")
        if self.datatype == "INT64":
            vocabulary = self.num_embeddings or 0
            if (x != np.round(x)).any() or x.min(initial=0) < 0 or x.max(initial=0) >= vocabulary:
                raise DataError(f"token ids must be integers in [0, {vocabulary})")
            return x.astype(np.int64)
        if np.abs(x).max(initial=0.0) > FLOAT32_MAX:
            raise DataError("input data holds numbers too large for FP32")
        return x.astype(np.float32)

    def prepare_named(self, named: Mapping[str, Any]) -> np.ndarray:
        _, value = _only(named, self.raw_fields(), self._takes())
        return self.prepare(value)

    def _takes(self) -> str:
        dims = ", ".join(map(str, self.shape))
        return f"the task takes 'input' {self.datatype} [n, {dims}] (n >= 1, {math.prod(self.shape)} values a sample)"


TaskInput = TabularInput | ImageInput | TextInput | TensorInput

_KINDS: dict[str, type[TabularInput] | type[ImageInput] | type[TextInput]] = {
    "tabular": TabularInput,
    "images": ImageInput,
    "text": TextInput,
}


def input_to_dict(inp: TaskInput) -> dict[str, Any]:
    return asdict(inp)


def input_from_dict(data: dict[str, Any]) -> TabularInput | ImageInput | TextInput:
    """The stored input of a task (from a model file's metadata)."""
    try:
        return _KINDS[data["kind"]](**{k: v for k, v in data.items() if k not in ("kind", "target_range")})
    except (KeyError, TypeError) as exc:
        raise DataError(f"the model file's input description is malformed: {exc!r}") from None
