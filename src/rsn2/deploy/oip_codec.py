"""Open Inference Protocol (v2) request and response bodies: JSON, and Triton's binary tensor data extension.

A request body is JSON, or (binary extension) a JSON header of ``Inference-Header-Content-Length``
bytes followed by the raw data of every input whose ``parameters.binary_data_size`` is set, in input
order. Binary numbers are little-endian in row-major order; a BYTES element is a 4-byte little-endian
length and its bytes. An answer is binary when the request asks for it (``parameters.binary_data_output``
or an output's ``parameters.binary_data``), JSON otherwise. In JSON, BYTES elements are strings.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

HEADER_LENGTH = "inference-header-content-length"
"""The HTTP header giving the JSON part's length in a binary-extension body."""

NUMERIC = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
"""OIP numeric datatypes and their NumPy types (BYTES is the other one)."""


class CodecError(Exception):
    """A body that is not a well-formed inference request; ``status`` is the HTTP status (4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _Tensor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[int]
    datatype: str
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class _RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    parameters: dict[str, Any] | None = None


class _InferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    id: str | None = None
    model_name: str | None = None  # KServe's client repeats the URL's model in the body
    model_version: str | None = None
    inputs: list[_Tensor]
    outputs: list[_RequestedOutput] | None = None
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True)
class InferRequest:
    """A decoded request: each input by name (a NumPy array of its declared shape, or for BYTES a list
    of ``bytes``), the declared datatypes, the outputs asked for (``None``: all) and which of them
    are wanted as binary data."""

    id: str | None
    model_name: str | None
    inputs: dict[str, Any]
    datatypes: dict[str, str]
    outputs: list[str] | None
    binary_outputs: set[str]
    all_binary: bool
    binary_inputs: frozenset[str] = frozenset()


EXAMPLE = '{"inputs": [{"name": "...", "shape": [n, ...], "datatype": "FP32", "data": [...]}]}'


def decode_request(body: bytes, header_length: str | None) -> InferRequest:
    """Parse a request body (JSON, or binary extension when ``header_length`` is given)."""
    blob = b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise CodecError(
                f"{HEADER_LENGTH} is {header_length!r}: it must be the JSON header's length in bytes, at most "
                f"the body's {len(body)}"
            )
        body, blob = body[: int(header_length)], body[int(header_length) :]
    try:
        raw = json.loads(body, parse_constant=_refuse_constant)
    except CodecError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CodecError(f"the body is not valid JSON: {exc}") from None
    try:
        request = _InferRequest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise CodecError(f"not an inference request ({problems}); expected {EXAMPLE}") from None
    names = [t.name for t in request.inputs]
    if len(set(names)) != len(names):
        raise CodecError(f"input names repeat: {names}")
    inputs, offset, binary_inputs = {}, 0, set()
    for tensor in request.inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(blob):
                raise CodecError(f"input {tensor.name!r}: binary_data_size {size!r} runs past the body's binary data")
            inputs[tensor.name] = _from_binary(tensor, blob[offset : offset + size])
            offset += size
            binary_inputs.add(tensor.name)
        else:
            inputs[tensor.name] = _from_json(tensor)
    if offset != len(blob):
        raise CodecError(f"the body holds {len(blob) - offset} bytes of binary data no input claims")
    params = request.parameters or {}
    requested = request.outputs
    return InferRequest(
        request.id,
        request.model_name,
        inputs,
        {t.name: t.datatype for t in request.inputs},
        [o.name for o in requested] if requested is not None else None,
        {o.name for o in requested or [] if (o.parameters or {}).get("binary_data")},
        bool(params.get("binary_data_output", False)),
        frozenset(binary_inputs),
    )


def _check_shape(tensor: _Tensor) -> int:
    if not tensor.shape or any(d < 0 for d in tensor.shape):
        raise CodecError(f"input {tensor.name!r}: shape must be a list of sizes >= 0, got {tensor.shape}")
    return math.prod(tensor.shape)


def _from_json(tensor: _Tensor) -> Any:
    count = _check_shape(tensor)
    if tensor.data is None:
        raise CodecError(f"input {tensor.name!r} has no data (give 'data', or binary data with binary_data_size)")
    if tensor.datatype == "BYTES":
        flat = _flatten(tensor.data)
        if not all(isinstance(v, str) for v in flat):
            raise CodecError(f"input {tensor.name!r}: BYTES data must be strings in JSON")
        if len(flat) != count:
            raise CodecError(f"input {tensor.name!r} holds {len(flat)} elements, shape {tensor.shape} needs {count}")
        return [v.encode("utf-8") for v in flat]
    dtype = _numeric(tensor)
    try:
        values = np.asarray(tensor.data, dtype=np.float64).ravel()
    except (ValueError, TypeError):
        raise CodecError(
            f"input {tensor.name!r}: {tensor.datatype} data must be numbers (a flat or nested list)"
        ) from None
    if values.size != count:
        raise CodecError(f"input {tensor.name!r} holds {values.size} numbers, shape {tensor.shape} needs {count}")
    if dtype is not np.float64 and np.isfinite(values).all():
        info = (
            np.finfo(dtype) if np.issubdtype(dtype, np.floating) else np.iinfo(dtype) if dtype is not np.bool_ else None
        )
        if info is not None and values.size and (values.min() < info.min or values.max() > info.max):
            raise CodecError(f"input {tensor.name!r} holds numbers outside the range of {tensor.datatype}")
    return values.reshape(tensor.shape)


def _from_binary(tensor: _Tensor, data: bytes) -> Any:
    count = _check_shape(tensor)
    if tensor.data is not None:
        raise CodecError(f"input {tensor.name!r} has both 'data' and binary_data_size")
    if tensor.datatype == "BYTES":
        items: list[bytes] = []
        at = 0
        while at < len(data):
            if at + 4 > len(data):
                raise CodecError(f"input {tensor.name!r}: BYTES element {len(items)} lacks its 4-byte length")
            (n,) = struct.unpack_from("<I", data, at)
            if at + 4 + n > len(data):
                raise CodecError(f"input {tensor.name!r}: BYTES element {len(items)} runs past its data")
            items.append(data[at + 4 : at + 4 + n])
            at += 4 + n
        if len(items) != count:
            raise CodecError(f"input {tensor.name!r} holds {len(items)} elements, shape {tensor.shape} needs {count}")
        return items
    dtype = np.dtype(_numeric(tensor)).newbyteorder("<")
    if len(data) != count * dtype.itemsize:
        raise CodecError(
            f"input {tensor.name!r}: {len(data)} bytes of binary data, shape {tensor.shape} of {tensor.datatype} "
            f"needs {count * dtype.itemsize}"
        )
    return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("=")).reshape(tensor.shape)


def _numeric(tensor: _Tensor) -> Any:
    if tensor.datatype not in NUMERIC:
        raise CodecError(f"input {tensor.name!r}: unknown datatype {tensor.datatype!r}; allowed: {[*NUMERIC, 'BYTES']}")
    return NUMERIC[tensor.datatype]


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def _refuse_constant(name: str) -> Any:
    raise CodecError(f"the body holds {name}, which is not a finite number")


def encode_response(head: dict[str, Any], outputs: dict[str, np.ndarray], binary: set[str]) -> tuple[bytes, int | None]:
    """The answer body: ``head`` (model name, id...) plus ``outputs`` (FP32 arrays, or object arrays of
    strings sent as BYTES); those named in ``binary`` as binary data. Returns the body and the JSON
    part's length when any output is binary (else ``None``)."""
    described, blobs = [], []
    for name, value in outputs.items():
        is_bytes = value.dtype == object
        entry: dict[str, Any] = {"name": name, "datatype": "BYTES" if is_bytes else "FP32", "shape": list(value.shape)}
        if name in binary:
            blob = _bytes_blob(value) if is_bytes else np.ascontiguousarray(value, dtype="<f4").tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = [str(v) for v in value.ravel()] if is_bytes else value.ravel().tolist()
        described.append(entry)
    header = json.dumps({**head, "outputs": described}).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def _bytes_blob(value: np.ndarray) -> bytes:
    parts = []
    for v in value.ravel():
        raw = v if isinstance(v, bytes) else str(v).encode("utf-8")
        parts.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(parts)
