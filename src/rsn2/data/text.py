"""Text preprocessing for IMDB: tokenising, a frequency vocabulary, fixed-length id sequences."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

PAD = 0
OOV = 1
TOKEN_PATTERN = r"[a-z0-9']+"
"""A word: a run of lower-case letters, digits and apostrophes (after lower-casing)."""
_TOKEN = re.compile(TOKEN_PATTERN)


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens; HTML line breaks (``<br />``) and punctuation separate words."""
    return _TOKEN.findall(text.lower().replace("<br />", " "))


@dataclass(frozen=True)
class Vocabulary:
    """The ``size`` most frequent training words. Ids: 0 padding, 1 out-of-vocabulary, 2.. the words
    by decreasing frequency (ties alphabetical). ``num_embeddings = size + 2``."""

    words: tuple[str, ...]

    @classmethod
    def build(cls, texts: Iterable[str], size: int = 10_000) -> Vocabulary:
        counts = Counter(tok for text in texts for tok in tokenize(text))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]
        return cls(tuple(w for w, _ in ranked))

    @property
    def num_embeddings(self) -> int:
        return len(self.words) + 2

    @cached_property
    def index(self) -> dict[str, int]:
        """Word -> id, built once per vocabulary."""
        return {w: i + 2 for i, w in enumerate(self.words)}

    def encode(self, texts: Sequence[str], length: int = 128) -> np.ndarray:
        """``(len(texts), length)`` int64 ids, truncated or zero-padded at the END."""
        index = self.index
        out = np.zeros((len(texts), length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [index.get(tok, OOV) for tok in tokenize(text)[:length]]
            out[row, : len(ids)] = ids
        return out
