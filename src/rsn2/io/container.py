"""rsn2's one file container: safetensors tensors plus a JSON header under the metadata key ``"rsn2"``.

Model files (:mod:`rsn2.io.model_file`) and stage checkpoints (:mod:`rsn2.training.checkpoint`) are
both containers; they differ in the ``format`` named in the header and in what they store. Writes are
atomic; reads never unpickle anything, and every failure becomes the caller's error type with the
file's path in the message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save as safetensors_save
from torch import Tensor

from rsn2.errors import RSN2Error
from rsn2.io.atomic import atomic_write_bytes

METADATA_KEY = "rsn2"
"""The safetensors metadata key holding the JSON header."""


def write_container(
    path: str | os.PathLike[str],
    tensors: dict[str, Tensor],
    header: dict[str, Any],
    error: type[RSN2Error],
) -> int:
    """Write ``tensors`` (contiguous, on the CPU) and ``header`` to ``path`` atomically; returns the size."""
    try:
        text = json.dumps(header, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise error(f"metadata must be JSON-serialisable: {exc}") from None
    blob = safetensors_save(tensors, metadata={METADATA_KEY: text})
    atomic_write_bytes(path, blob)
    return len(blob)


class Container:
    """An open container file: its checked ``header`` and lazy access to its tensors.

    Use as a context manager::

        with Container(path, "rsn2-model", 1, ModelFileError) as f:
            f.header["spec"], f.keys(), f.get_tensor("trunk.0.weight")

    Opening raises ``error`` when the file is missing or unreadable, has no rsn2 header, the header
    is not a JSON object, names another ``format`` or another ``format_version``. ``hint`` is added
    to those messages (what the user can do about it).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        format: str,
        format_version: int | tuple[int, ...],
        error: type[RSN2Error],
        what: str = "rsn2 file",
        hint: str = "",
    ) -> None:
        self.path = Path(path)
        self.format = format
        self.versions = (format_version,) if isinstance(format_version, int) else tuple(format_version)
        self.error, self.what, self.hint = error, what, hint
        self.header: dict[str, Any] = {}

    def _fail(self, message: str) -> RSN2Error:
        return self.error(f"{self.path}{message}" + (f"; {self.hint}" if self.hint else ""))

    def __enter__(self) -> Container:
        if not self.path.is_file():
            raise self.error(f"no {self.what} at {self.path}" + (f"; {self.hint}" if self.hint else ""))
        try:
            self._ctx = safe_open(str(self.path), framework="pt")
            self._handle = self._ctx.__enter__()
            metadata = self._handle.metadata() or {}
        except Exception as exc:
            raise self._fail(f" is not a readable safetensors {self.what} ({exc})") from None
        try:
            self.header = self._check(metadata)
        except BaseException:
            self._ctx.__exit__(None, None, None)
            raise
        return self

    def _check(self, metadata: dict[str, str]) -> dict[str, Any]:
        if METADATA_KEY not in metadata:
            raise self._fail(f" is a safetensors file but not an {self.what} (no {METADATA_KEY!r} metadata)")
        try:
            header = json.loads(metadata[METADATA_KEY])
        except json.JSONDecodeError as exc:
            raise self._fail(f": metadata is not valid JSON ({exc})") from None
        if not isinstance(header, dict) or header.get("format") != self.format:
            got = header.get("format") if isinstance(header, dict) else type(header).__name__
            raise self._fail(f" is not an {self.what} (metadata format {got!r}, expected {self.format!r})")
        version = header.get("format_version")
        if isinstance(version, bool) or version not in self.versions:
            readable = " or ".join(map(str, self.versions))
            raise self._fail(f": format version {version!r} is not supported; this rsn2 reads version {readable}")
        return header

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)

    def keys(self) -> list[str]:
        return list(self._handle.keys())

    def shapes(self) -> dict[str, list[int]]:
        """Every tensor's shape, from the file's index (nothing loaded)."""
        return {name: list(self._handle.get_slice(name).get_shape()) for name in self._handle.keys()}

    def get_tensor(self, name: str) -> Tensor:
        """Tensor ``name``; raises ``error`` (naming the tensor) when it is missing or unreadable."""
        try:
            return self._handle.get_tensor(name)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self.error(f"{self.path}: tensor {name!r} cannot be read ({exc})") from None
