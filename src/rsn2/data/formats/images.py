"""Decoding images with Pillow into preallocated uint8 arrays (N, C, H, W)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError

from rsn2.errors import DataError


def decode_into(
    out: np.ndarray,
    index: int,
    data: bytes,
    name: str,
    size: tuple[int, int] | None,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> None:
    """Decode one image (RGB, or L when ``out`` has one channel), resize to ``size`` (W, H) if given,
    and write it to ``out[index]`` as (C, H, W)."""
    mode = "L" if out.shape[1] == 1 else "RGB"
    try:
        with Image.open(io.BytesIO(data)) as opened:
            im = opened.convert(mode)
            if size is not None and im.size != size:
                im = im.resize(size, resample)
            arr = np.asarray(im, dtype=np.uint8)
    except UnidentifiedImageError:
        raise DataError(
            f"{name} is not a readable image (Pillow recognises no image format in its {len(data):,} bytes); "
            "allowed: the formats Pillow reads, such as PNG, JPEG, BMP, GIF and WebP"
        ) from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{name} is not a readable image ({exc})") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[:2] != out.shape[2:]:
        raise DataError(
            f"{name} decodes to {arr.shape[1]}x{arr.shape[0]}, expected {out.shape[3]}x{out.shape[2]}; "
            "pass a size to resize"
        )
    out[index] = arr.transpose(2, 0, 1)


def decode_all(
    items: Iterable[tuple[str, Callable[[], bytes]]],
    count: int,
    channels: int,
    hw: tuple[int, int],
    size: tuple[int, int] | None,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> np.ndarray:
    """Decode ``count`` images given as (name, read-bytes) pairs into one ``(count, C, H, W)`` uint8 array."""
    out = np.empty((count, channels, *hw), dtype=np.uint8)
    for i, (name, read) in enumerate(items):
        decode_into(out, i, read(), name, size, resample)
    return out
