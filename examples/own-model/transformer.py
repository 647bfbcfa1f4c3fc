"""A small transformer encoder (``nn.TransformerEncoderLayer``), written as an ordinary ``nn.Module``,
made multitask with ``rsn2.multitask``: IMDB sentiment and IMDB star rating, two text tasks in one
network, each reading its own subnetwork of the embeddings, attention projections and feed-forward
layers, with its own layer norms. Run from this folder::

    python transformer.py --data-dir ../../../shared/data --samples 5000 --epochs 10 --out text.safetensors

``sentiment`` (negative / positive) is trained first; ``rating`` (1-2, 3-4, 7-8, 9-10 stars) later,
leaving ``sentiment`` bit-identical. Serve or export with ``--factory transformer:build``.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

import rsn2
from rsn2 import TaskData, TaskSpec, TrainConfig, fit_stage
from rsn2.data.text import Vocabulary
from rsn2.network import linear

VOCABULARY = 5000
LENGTH = 128


class TextEncoder(nn.Module):
    """Token and position embeddings, ``layers`` encoder layers, mean over the non-padding tokens:
    ``(N, length)`` int64 ids (0 = padding) -> ``(N, dim)``."""

    def __init__(
        self, vocabulary: int = VOCABULARY + 2, length: int = LENGTH, dim: int = 64, heads: int = 4, layers: int = 2
    ) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocabulary, dim, padding_idx=0)
        self.positions = nn.Embedding(length, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        padding = x == 0
        positions = torch.arange(x.shape[1], device=x.device)
        h = self.encoder(self.tokens(x) + self.positions(positions), src_key_padding_mask=padding)
        keep = (~padding).unsqueeze(-1).to(h.dtype)
        return self.norm((h * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0))


def build() -> TextEncoder:
    """The factory ``rsn2 predict/export/serve --factory transformer:build`` calls."""
    return TextEncoder()


RATING_BUCKETS = {1: 0, 2: 0, 3: 1, 4: 1, 7: 2, 8: 2, 9: 3, 10: 3}
"""IMDB star rating -> rating class (IMDB holds no 5- or 6-star reviews)."""


def tasks(keep_fraction: float = 0.4, dim: int = 64, vocabulary: int = VOCABULARY + 2) -> dict[str, TaskSpec]:
    """``sentiment`` and ``rating`` on token ids, each with its own linear head."""
    common = {"input_shape": (LENGTH,), "keep_fraction": keep_fraction, "token_input": True}
    return {
        "sentiment": TaskSpec(
            "sentiment", "classification", head=[linear(dim, 2)], classes=["negative", "positive"], **common
        ),
        "rating": TaskSpec(
            "rating", "classification", head=[linear(dim, 4)], classes=["1-2", "3-4", "7-8", "9-10"], **common
        ),
    }


def read_imdb(path: Path, samples: int | None = None) -> list[dict]:
    """The first ``samples`` reviews of an IMDB JSON Lines file (``text``, ``label``, ``rating``)."""
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line))
            if samples is not None and len(out) >= samples:
                break
    return out


def encode(reviews: list[dict], vocabulary: Vocabulary) -> dict[str, TaskData]:
    """Token ids (padding 0) and each task's targets."""
    x = torch.from_numpy(vocabulary.encode([r["text"] for r in reviews], LENGTH))
    return {
        "sentiment": TaskData(x, torch.tensor([r["label"] for r in reviews])),
        "rating": TaskData(x, torch.tensor([RATING_BUCKETS[r["rating"]] for r in reviews])),
    }


def train(
    train_data: dict[str, TaskData], config: TrainConfig, encoder: TextEncoder | None = None
) -> tuple[rsn2.MultitaskNetwork, bool]:
    """``sentiment`` first, ``rating`` later; returns the network and whether ``sentiment`` stayed
    bit-identical."""
    encoder = encoder or TextEncoder()
    specs = tasks(dim=encoder.norm.normalized_shape[0], vocabulary=encoder.tokens.num_embeddings)
    net = rsn2.multitask(encoder, [specs["sentiment"]])
    fit_stage(net, {"sentiment": train_data["sentiment"]}, config)
    probe = train_data["sentiment"].x[:64]
    net.eval()
    with torch.no_grad():
        before = net(probe, task="sentiment")
    net.add_tasks([specs["rating"]])
    fit_stage(net, {"rating": train_data["rating"]}, config)
    net.eval()
    with torch.no_grad():
        return net, torch.equal(net(probe, task="sentiment"), before)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder holding imdb/")
    parser.add_argument("--samples", type=int, default=None, help="training reviews (default: all 25,000)")
    parser.add_argument("--test-samples", type=int, default=5000, help="test reviews (default 5000)")
    parser.add_argument("--epochs", type=int, default=10, help="most epochs per stage (default 10)")
    parser.add_argument("--out", default="text.safetensors", help="where to save the model")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    folder = Path(args.data_dir) / "imdb"
    reviews = read_imdb(folder / "train.jsonl.gz", args.samples)
    vocabulary = Vocabulary.build((r["text"] for r in reviews), VOCABULARY)
    train_data = encode(reviews, vocabulary)
    test_data = encode(read_imdb(folder / "test.jsonl.gz", args.test_samples), vocabulary)
    net, unchanged = train(train_data, TrainConfig(batch_size=64, max_epochs=args.epochs, patience=3, progress=False))
    net.eval()
    for t, data in test_data.items():
        with torch.no_grad(), net.task(t):
            print(f"{t:<10} test accuracy {float((net(data.x).argmax(dim=1) == data.y).float().mean()):.4f}")
    print(f"sentiment bit-identical after rating was trained: {unchanged}")
    print(f"wrote {args.out} ({rsn2.save_model(net, args.out):,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
