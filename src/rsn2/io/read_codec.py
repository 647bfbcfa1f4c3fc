"""Packed storage of read sets (forward transfer), over the positions of the earlier subnetworks.

A subnetwork with id ``sid`` can only read positions owned by subnetworks added before it (ids below
``sid``, all frozen when it was selected): the *domain*, in flat (C) order, which the owner map the
file already holds gives back. A read set is stored in whichever of three encodings is smallest:

- ``"all"``: it reads the whole domain (PackNet's rule); no bytes.
- ``"bitmap"``: one bit per domain position, most significant bit first (:func:`numpy.packbits`),
  zero padding: ``ceil(n / 8)`` bytes for ``n`` domain positions.
- ``"delta"``: the gaps between the domain indices it reads (the first counted from -1), each an
  unsigned LEB128 varint: about ``log2(n / reads) / 7`` bytes per position read, far below the bitmap
  when a task reads a small part of a large domain (WSN's rule late in a long stream).
"""

from __future__ import annotations

import numpy as np

from rsn2.errors import ModelFileError

ENCODINGS = ("all", "bitmap", "delta")


def earlier_positions(owner: np.ndarray, sid: int) -> np.ndarray:
    """Flat bool array: positions owned by a subnetwork with an id below ``sid`` (the domain)."""
    return owner.reshape(-1) < sid


def pack_reads(reads: np.ndarray, owner: np.ndarray, sid: int) -> tuple[str, bytes]:
    """The read set ``reads`` (bool, the owner map's shape) of subnetwork ``sid``: ``(encoding, bytes)``,
    the smallest of :data:`ENCODINGS`.

    Raises:
        ValueError: ``reads`` holds a position outside the domain (not owned by an earlier subnetwork).
    """
    domain = earlier_positions(owner, sid)
    flat = reads.reshape(-1)
    if bool((flat & ~domain).any()):
        raise ValueError(f"subnetwork {sid} reads positions no earlier subnetwork owns")
    bits = flat[domain]
    if bool(bits.all()):
        return "all", b""
    bitmap = np.packbits(bits).tobytes()
    delta = _varints(np.diff(np.flatnonzero(bits), prepend=-1))
    return ("delta", delta) if len(delta) < len(bitmap) else ("bitmap", bitmap)


def unpack_reads(encoding: str, data: bytes, owner: np.ndarray, sid: int, count: int, where: str) -> np.ndarray:
    """The read set (bool, the owner map's shape) of subnetwork ``sid`` from :func:`pack_reads`'s output.

    Raises:
        ModelFileError: an unknown encoding, bytes that do not fit the domain (length, padding bits,
            a varint running past the data or an index past the domain), or a number of positions
            read other than ``count`` (the header's record).
    """
    domain = earlier_positions(owner, sid)
    n = int(domain.sum())
    if encoding == "all":
        if data:
            raise ModelFileError(f"{where}: an 'all' read set holds no bytes, this one {len(data)}")
        bits = np.ones(n, dtype=bool)
    elif encoding == "bitmap":
        if len(data) != (n + 7) // 8:
            raise ModelFileError(f"{where}: {len(data)} bytes for a read set over {n} earlier positions")
        unpacked = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
        if bool(unpacked[n:].any()):
            raise ModelFileError(f"{where}: the read set's padding bits are set")
        bits = unpacked[:n].astype(bool)
    elif encoding == "delta":
        gaps = _from_varints(data, where)
        if len(gaps) and (bool((gaps < 1).any()) or int(gaps.sum()) - 1 >= n):
            raise ModelFileError(f"{where}: the read set's positions run past its {n} earlier positions")
        bits = np.zeros(n, dtype=bool)
        bits[np.cumsum(gaps) - 1] = True
    else:
        raise ModelFileError(f"{where}: unknown read-set encoding {encoding!r}; known: {list(ENCODINGS)}")
    if int(bits.sum()) != count:
        raise ModelFileError(f"{where}: the read set holds {int(bits.sum())} positions, the header records {count}")
    reads = np.zeros(owner.size, dtype=bool)
    reads[domain] = bits
    return reads.reshape(owner.shape)


def _varints(values: np.ndarray) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low bits first, the high bit set on every byte but the last."""
    values = values.astype(np.uint64)
    lengths = np.maximum(1, (np.floor(np.log2(np.maximum(values, 1))).astype(np.int64) // 7) + 1)
    out = np.zeros(int(lengths.sum()), dtype=np.uint8)
    starts = np.cumsum(lengths) - lengths
    for i in range(int(lengths.max()) if len(values) else 0):
        has = lengths > i
        chunk = (values[has] >> np.uint64(7 * i)) & np.uint64(0x7F)
        more = (lengths[has] > i + 1).astype(np.uint8) << 7
        out[starts[has] + i] = chunk.astype(np.uint8) | more
    return out.tobytes()


def _from_varints(data: bytes, where: str) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8)
    if len(raw) and raw[-1] & 0x80:
        raise ModelFileError(f"{where}: the read set's last varint is cut off")
    ends = np.flatnonzero((raw & 0x80) == 0)
    starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else np.zeros(0, dtype=np.int64)
    if len(ends) and int((ends - starts).max()) >= 9:
        raise ModelFileError(f"{where}: a read-set varint is longer than 9 bytes")
    values = np.zeros(len(ends), dtype=np.uint64)
    for i in range(int((ends - starts).max()) + 1 if len(ends) else 0):
        has = starts + i <= ends
        values[has] |= (raw[starts[has] + i] & np.uint64(0x7F)).astype(np.uint64) << np.uint64(7 * i)
    return values.astype(np.int64)
