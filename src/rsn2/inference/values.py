"""Packed weight values held as float32 or as bfloat16, read by the compiled kernels as float32.

A bfloat16 value is the upper half of a float32's bits (sign, the 8 exponent bits, 7 mantissa bits):
NumPy has no such type, so a packed share holds the bits as ``uint16`` and the kernels widen each one
to float32 as they read it (a shift and a bit cast, no rounding), then multiply-add in float32. Every
kernel reads values through :func:`value_at`, compiled for the array it is given: a float32 array
reads as before, a ``uint16`` one is widened.

Rounding to bfloat16 is PyTorch's (round to nearest, ties to even), done once when a share is packed
(:func:`to_bfloat16_bits`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from rsn2.errors import SpecError

VALUE_DTYPES = ("float32", "bfloat16")
"""What a packed share's values may be held as (:attr:`~rsn2.inference.SparsePolicy.values`)."""


def check_value_dtype(name: str) -> str:
    """``name`` if it is one of :data:`VALUE_DTYPES`, else :class:`~rsn2.errors.SpecError` naming them."""
    if name not in VALUE_DTYPES:
        raise SpecError(f"packed values must be one of {', '.join(VALUE_DTYPES)}, got {name!r}")
    return name


def to_bfloat16_bits(values: np.ndarray | torch.Tensor) -> np.ndarray:
    """``uint16`` bfloat16 bits of float ``values`` (any shape), rounded to nearest, ties to even."""
    if isinstance(values, torch.Tensor):
        t = values.detach().to("cpu", torch.float32)
    else:
        t = torch.from_numpy(np.array(values, dtype=np.float32))  # a writable copy
    return t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def from_bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    """The float32 values of ``uint16`` bfloat16 ``bits`` (exact)."""
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def as_float32(values: np.ndarray) -> np.ndarray:
    """Packed ``values`` as float32: themselves when float32, widened when bfloat16 bits."""
    return from_bfloat16_bits(values) if values.dtype == np.uint16 else values


def rounded(values: torch.Tensor, dtype: str) -> torch.Tensor:
    """``values`` (float32) as the kernels would read them after packing in ``dtype``: rounded to
    bfloat16 and back for ``"bfloat16"``, unchanged for ``"float32"``."""
    if dtype == "bfloat16":
        return values.to(torch.bfloat16).to(values.dtype)
    return values


@intrinsic
def _widened(typingctx: Any, bits: Any) -> Any:  # pragma: no cover - compiled
    """The float32 whose upper 16 bits are the ``uint16`` ``bits`` and lower 16 bits are 0: a zero
    extension, a shift and a bit cast, no conversion."""
    if bits != types.uint16:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        word = builder.shl(builder.zext(args[0], ir.IntType(32)), ir.Constant(ir.IntType(32), 16))
        return builder.bitcast(word, ir.FloatType())

    return types.float32(types.uint16), codegen


def value_at(vals: np.ndarray, k: int) -> float:
    """``vals[k]`` as float32; in compiled code, ``vals`` float32 or ``uint16`` bfloat16 bits."""
    return float(as_float32(vals[k : k + 1])[0])


@overload(value_at, inline="always")
def _value_at(vals: Any, k: Any) -> Any:  # pragma: no cover - compiled
    if isinstance(vals, types.Array) and vals.dtype == types.uint16:

        def widen(vals: Any, k: Any) -> Any:
            return _widened(vals[k])  # type: ignore[call-arg]  # typingctx is Numba's

        return widen
    if isinstance(vals, types.Array) and vals.dtype == types.float32:

        def read(vals: Any, k: Any) -> Any:
            return vals[k]

        return read
    return None
