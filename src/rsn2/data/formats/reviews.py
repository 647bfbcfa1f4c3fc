"""IMDB reviews: the aclImdb tarball (``aclImdb/<split>/<pos|neg>/<id>_<rating>.txt``) or JSON Lines."""

from __future__ import annotations

import gzip
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from rsn2.errors import DataError


@dataclass(frozen=True)
class Review:
    text: str
    label: int  # 1 positive, 0 negative
    id: int


def read_jsonl_reviews(path: Path) -> list[Review]:
    """Reviews from a gzip JSON Lines file of ``{"text", "label", "id", ...}`` objects."""
    out: list[Review] = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                obj = json.loads(line)
                out.append(Review(str(obj["text"]), int(obj["label"]), int(obj["id"])))
    except (OSError, EOFError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path} line {len(out) + 1}: not a readable IMDB JSON Lines file: {exc}") from None
    return _sorted(out)


def read_aclimdb_reviews(path: Path, split: str) -> list[Review]:
    """Reviews of ``split`` (train/test) from ``aclImdb_v1.tar.gz``, streamed member by member."""
    out = []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                parts = member.name.split("/")
                if len(parts) == 4 and parts[1] == split and parts[2] in ("pos", "neg") and parts[3].endswith(".txt"):
                    f = tar.extractfile(member)
                    assert f is not None
                    out.append(Review(f.read().decode("utf-8"), int(parts[2] == "pos"), int(parts[3].split("_")[0])))
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path} is not a readable aclImdb archive: {exc}") from None
    if not out:
        raise DataError(f"{path}: no reviews found under aclImdb/{split}/pos|neg/")
    return _sorted(out)


def _sorted(reviews: list[Review]) -> list[Review]:
    """One order for every layout: negative first, then by id."""
    return sorted(reviews, key=lambda r: (r.label, r.id))
