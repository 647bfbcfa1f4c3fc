"""CIFAR-10's official binary batches: records of 1 label byte + 3072 pixel bytes (R, G, B planes)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from rsn2.errors import DataError

RECORD = 1 + 3 * 32 * 32
TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_BATCHES = ("test_batch.bin",)


def parse_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of one binary batch."""
    if len(data) == 0 or len(data) % RECORD:
        raise DataError(f"{name}: {len(data)} bytes is not a whole number of {RECORD}-byte CIFAR-10 records")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{name}: label {int(labels.max())} outside 0..9")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def read_cifar_binary(source: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read the ``train`` or ``test`` batches from ``cifar-10-binary.tar.gz`` or its extracted folder."""
    wanted = TRAIN_BATCHES if split == "train" else TEST_BATCHES
    blobs: dict[str, bytes] = {}
    if source.is_dir():
        for name in wanted:
            path = next(iter(source.rglob(name)), None)
            if path is None:
                raise DataError(f"{source}: CIFAR-10 batch {name} is missing")
            blobs[name] = path.read_bytes()
    else:
        try:
            with tarfile.open(source, "r:gz") as tar:
                for member in tar:
                    base = Path(member.name).name
                    if base in wanted and member.isfile():
                        f = tar.extractfile(member)
                        assert f is not None
                        blobs[base] = f.read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"{source} is not a readable CIFAR-10 binary archive: {exc}") from None
        missing = [n for n in wanted if n not in blobs]
        if missing:
            raise DataError(f"{source}: CIFAR-10 batch(es) {missing} are missing from the archive")
    parts = [parse_batch(blobs[n], n) for n in wanted]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
