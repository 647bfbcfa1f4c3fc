"""Packed storage of read sets (forward transfer): one bit per position of the earlier subnetworks.

A subnetwork with id ``sid`` can only read positions owned by subnetworks added before it (ids below
``sid``, all frozen when it was selected). Its read set is stored as a bitmap over exactly those
positions, in flat (C) order, most significant bit first (:func:`numpy.packbits`): ``ceil(n / 8)``
bytes for ``n`` earlier-owned positions, whatever the layer's size or the number of free positions.
The owner map the file already holds gives the bitmap's positions back.
"""

from __future__ import annotations

import numpy as np

from rsn2.errors import ModelFileError


def earlier_positions(owner: np.ndarray, sid: int) -> np.ndarray:
    """Flat bool array: positions owned by a subnetwork with an id below ``sid`` (the bitmap's domain)."""
    return owner.reshape(-1) < sid


def pack_reads(reads: np.ndarray, owner: np.ndarray, sid: int) -> bytes:
    """The read set ``reads`` (bool, the owner map's shape) of subnetwork ``sid`` as bytes.

    Raises:
        ValueError: ``reads`` holds a position outside the domain (not owned by an earlier subnetwork).
    """
    domain = earlier_positions(owner, sid)
    flat = reads.reshape(-1)
    if bool((flat & ~domain).any()):
        raise ValueError(f"subnetwork {sid} reads positions no earlier subnetwork owns")
    return np.packbits(flat[domain]).tobytes()


def unpack_reads(data: bytes, owner: np.ndarray, sid: int, count: int, where: str) -> np.ndarray:
    """The read set (bool, the owner map's shape) of subnetwork ``sid`` from :func:`pack_reads`'s bytes.

    Raises:
        ModelFileError: the byte count does not fit the domain, padding bits are set, or the number
            of positions read is not ``count`` (the header's record).
    """
    domain = earlier_positions(owner, sid)
    n = int(domain.sum())
    if len(data) != (n + 7) // 8:
        raise ModelFileError(f"{where}: {len(data)} bytes for a read set over {n} earlier positions")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if bool(bits[n:].any()):
        raise ModelFileError(f"{where}: the read set's padding bits are set")
    reads = np.zeros(owner.size, dtype=bool)
    reads[domain] = bits[:n].astype(bool)
    if int(reads.sum()) != count:
        raise ModelFileError(f"{where}: the read set holds {int(reads.sum())} positions, the header records {count}")
    return reads.reshape(owner.shape)
