"""The paper's six datasets as train/test tensors, preprocessed as docs/method.md, "Training settings", says.

Every loader takes ``data_dir`` (else ``$RSN2_DATA``, else the user cache; see
:func:`rsn2.data.location.data_dir`), verifies the files' checksums and raises
:class:`~rsn2.errors.DataError` with what is expected where when something is missing or corrupt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.preprocessing import MinMaxScaler
from torch import Tensor

from rsn2.data.catalog import OMNIGLOT_CONTENT_SHA256
from rsn2.data.formats.cifar_binary import read_cifar_binary
from rsn2.data.formats.idx import read_idx
from rsn2.data.formats.image_folder import read_image_folder
from rsn2.data.formats.omniglot import PARTS, read_omniglot
from rsn2.data.formats.reviews import read_aclimdb_reviews, read_jsonl_reviews
from rsn2.data.formats.utkface import read_utkface
from rsn2.data.location import locate
from rsn2.data.text import Vocabulary
from rsn2.errors import DataError

PathLike = str | os.PathLike[str] | None

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FASHION_EASY = (1, 5, 7, 8, 9)
"""Experiment 2's easy Fashion-MNIST classes: trouser, sandal, sneaker, bag, ankle boot."""
FASHION_HARD = (0, 2, 3, 4, 6)
"""Experiment 2's hard Fashion-MNIST classes: t-shirt, pullover, dress, coat, shirt."""
SMOKE_TRAIN, SMOKE_TEST = 256, 128
"""How many training and test samples per task a smoke run keeps (``rsn2 run --smoke``, ``rsn2 cl --smoke``)."""


@dataclass
class Split:
    """Inputs ``x`` and targets ``y`` of one split."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class Dataset:
    """A dataset's train and test splits plus what a report needs to say about it."""

    name: str
    train: Split
    test: Split
    classes: list[str] | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def pixels(images: np.ndarray, flatten: bool = False) -> Tensor:
    """uint8 ``(N, C, H, W)`` -> float32 divided by 255 (nothing else); ``(N, C*H*W)`` if ``flatten``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)
    return x.reshape(len(x), -1) if flatten else x


def _idx_dataset(name: str, data_dir: PathLike, flatten: bool, classes: list[str]) -> Dataset:
    found = locate(name, data_dir)
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(found.path(f"{prefix}-images-idx3-ubyte.gz"))
        labels = read_idx(found.path(f"{prefix}-labels-idx1-ubyte.gz"))
        if images.ndim != 3 or len(images) != len(labels):
            raise DataError(f"{found.folder}: {split} images {images.shape} and labels {labels.shape} disagree")
        parts[split] = Split(pixels(images[:, None], flatten), torch.from_numpy(labels.astype(np.int64)))
    return Dataset(name, parts["train"], parts["test"], classes)


def load_mnist(data_dir: PathLike = None, flatten: bool = False) -> Dataset:
    """MNIST: x ``(N, 1, 28, 28)`` (or ``(N, 784)``) in [0, 1], y digit 0..9. 60,000 / 10,000."""
    return _idx_dataset("mnist", data_dir, flatten, [str(d) for d in range(10)])


def load_fashion_mnist(data_dir: PathLike = None, flatten: bool = False) -> Dataset:
    """Fashion-MNIST, same shapes as MNIST; classes :data:`FASHION_CLASSES`."""
    return _idx_dataset("fashion-mnist", data_dir, flatten, list(FASHION_CLASSES))


def class_subset(data: Dataset, classes: tuple[int, ...], name: str) -> Dataset:
    """Only the samples of ``classes``, relabelled 0..len(classes)-1 in the given order (Experiment 2)."""
    lookup = torch.full((int(max(classes)) + 1,), -1, dtype=torch.long)
    lookup[list(classes)] = torch.arange(len(classes))

    def pick(split: Split) -> Split:
        keep = torch.isin(split.y, torch.tensor(classes))
        return Split(split.x[keep], lookup[split.y[keep]])

    names = [data.classes[c] for c in classes] if data.classes else None
    return Dataset(name, pick(data.train), pick(data.test), names, data.notes)


def fashion_easy_hard(data: Dataset) -> tuple[Dataset, Dataset]:
    """Experiment 2's split of Fashion-MNIST into the easy and the hard 5-way task."""
    return (
        class_subset(data, FASHION_EASY, "fashion-mnist-easy"),
        class_subset(data, FASHION_HARD, "fashion-mnist-hard"),
    )


def load_cifar10(data_dir: PathLike = None, size: int | None = None, flatten: bool = False) -> Dataset:
    """CIFAR-10: x ``(N, 3, size, size)`` in [0, 1] (32 unless ``size``; Experiment 6 uses 28), y 0..9.

    Reads the official binary batches (``cifar-10-binary.tar.gz``) or the image-folder zip
    (``cifar10-images.zip``, lossy JPEG pixels: its notes say so).
    """
    found = locate("cifar-10", data_dir)
    source = found.path(found.layout.files[0].name)
    parts, notes = {}, ""
    for split in ("train", "test"):
        if found.layout.name == "binary":
            images, labels = read_cifar_binary(source, split)
            if size is not None and size != 32:
                images = _resize(images, size)
        else:
            folder = read_image_folder(
                source, split, channels=3, size=None if size is None else (size, size), classes=CIFAR10_CLASSES
            )
            images, labels = folder.images, folder.labels
            notes = "CIFAR-10 from JPEG copies (quality 75, 4:2:0): pixels are lossy"
        parts[split] = Split(pixels(images, flatten), torch.from_numpy(labels))
    return Dataset("cifar-10", parts["train"], parts["test"], list(CIFAR10_CLASSES), notes)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(images), images.shape[1], size, size), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = np.asarray(
            Image.fromarray(img.transpose(1, 2, 0)).resize((size, size), Image.Resampling.BILINEAR)
        ).transpose(2, 0, 1)
    return out


@dataclass
class BostonScaling:
    """Min-max scalers fitted on the training split only; ``inverse_target`` maps predictions back to $1000s."""

    features: MinMaxScaler
    target: MinMaxScaler

    def inverse_target(self, y: Tensor) -> Tensor:
        return torch.from_numpy(self.target.inverse_transform(y.reshape(-1, 1).double().numpy())[:, 0]).float()


def load_boston(data_dir: PathLike = None, test_split: float = 0.2, seed: int = 113) -> Dataset:
    """Boston Housing: 13 features, MEDV target, both min-max scaled with training statistics.

    Split as Keras does it (shuffle with ``numpy.random.RandomState(seed)``, first 80% train: 404 / 102).
    ``extra["scaling"]`` is a :class:`BostonScaling` for the inverse transform.
    """
    found = locate("boston", data_dir)
    source = found.path(found.layout.files[0].name)
    if found.layout.name == "npz":
        with np.load(source, allow_pickle=False) as npz:
            x, y = np.asarray(npz["x"], dtype=np.float64), np.asarray(npz["y"], dtype=np.float64)
    else:
        try:
            table = np.genfromtxt(source, delimiter=",", names=True, dtype=np.float64)
        except ValueError as exc:
            raise DataError(f"{source}: not a readable Boston CSV: {exc}") from None
        columns = list(table.dtype.names or ())
        if len(columns) != 14 or columns[-1] != "MEDV":
            raise DataError(f"{source}: expected 13 feature columns then MEDV, got {columns}")
        x = np.stack([np.asarray(table[c]) for c in columns[:-1]], axis=1)  # type: ignore[call-overload]
        y = np.asarray(table["MEDV"])  # type: ignore[call-overload]
    if x.shape != (506, 13) or np.isnan(x).any() or np.isnan(y).any():
        raise DataError(f"{source}: expected 506 complete rows of 13 features, got {x.shape}")
    order = np.arange(len(x))
    np.random.RandomState(seed).shuffle(order)
    x, y = x[order], y[order]
    n_train = int(len(x) * (1 - test_split))
    fx, fy = MinMaxScaler().fit(x[:n_train]), MinMaxScaler().fit(y[:n_train, None])

    def split(sl: slice) -> Split:
        return Split(
            torch.from_numpy(fx.transform(x[sl])).float(), torch.from_numpy(fy.transform(y[sl, None])[:, 0]).float()
        )

    return Dataset(
        "boston", split(slice(0, n_train)), split(slice(n_train, None)), None, extra={"scaling": BostonScaling(fx, fy)}
    )


def load_imdb(data_dir: PathLike = None, vocab_size: int = 10_000, length: int = 128) -> Dataset:
    """IMDB reviews as ``(N, length)`` int64 ids of the ``vocab_size`` most frequent training words,
    truncated or padded at the end; y 1 positive, 0 negative. ``extra["vocabulary"]`` is the
    :class:`~rsn2.data.text.Vocabulary` (``num_embeddings`` = vocab_size + 2)."""
    found = locate("imdb", data_dir)

    def reviews(split_name: str) -> list[Any]:
        if found.layout.name == "aclImdb":
            return read_aclimdb_reviews(found.path("aclImdb_v1.tar.gz"), split_name)
        return read_jsonl_reviews(found.path(f"{split_name}.jsonl.gz"))

    def encode(texts: list[Any]) -> Split:
        return Split(
            torch.from_numpy(vocab.encode([r.text for r in texts], length)),
            torch.tensor([r.label for r in texts], dtype=torch.long),
        )

    # one split's texts in memory at a time keeps the peak under twice the tensors' size
    train_reviews = reviews("train")
    vocab = Vocabulary.build((r.text for r in train_reviews), vocab_size)
    train = encode(train_reviews)
    del train_reviews
    test = encode(reviews("test"))
    return Dataset("imdb", train, test, ["negative", "positive"], extra={"vocabulary": vocab})


def age_decade(age: np.ndarray) -> np.ndarray:
    """UTKFace age classes: 0-10 -> 0, 11-20 -> 1, ..., 81-90 -> 8, 91+ -> 9."""
    return np.clip((np.asarray(age) - 1) // 10, 0, 9).astype(np.int64)


def load_utkface(
    data_dir: PathLike = None, size: int = 32, test_fraction: float = 0.2, seed: int = 0, source: PathLike = None
) -> dict[str, Dataset]:
    """UTKFace's three tasks: ``{"age": 10 decade classes, "gender": 2, "race": 5}``.

    x ``(N, 3, size, size)`` in [0, 1] (downscaled with box filtering), one tensor shared by the three
    tasks; an 80/20 train/test split fixed by ``seed``. ``source`` reads a folder or zip of the original
    JPEGs instead of the data directory.
    """
    if source is None:
        found = locate("utkface", data_dir)
        if found.layout.directory:
            path, notes = found.path(found.layout.directory), ""
        else:
            path = found.path(found.layout.files[0].name)
            notes = "UTKFace copy resized to 64x64 and re-encoded as JPEG before this downscaling"
    else:
        from pathlib import Path

        path, notes = Path(source), ""
    faces = read_utkface(path, (size, size))
    x = pixels(faces.images)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = round(test_fraction * len(x))
    test_idx, train_idx = order[:n_test], order[n_test:]
    x_train, x_test = x[train_idx], x[test_idx]
    labels = {"age": age_decade(faces.age), "gender": faces.gender, "race": faces.race}
    classes = {
        "age": [f"{10 * i + 1 if i else 0}-{10 * i + 10}" for i in range(9)] + ["91+"],
        "gender": ["male", "female"],
        "race": ["White", "Black", "Asian", "Indian", "Others"],
    }
    out = {}
    for task, y in labels.items():
        yt = torch.from_numpy(y)
        out[task] = Dataset(
            f"utkface-{task}", Split(x_train, yt[train_idx]), Split(x_test, yt[test_idx]), classes[task], notes
        )
    return out


@dataclass
class OmniglotCharacters:
    """Omniglot's 1,623 characters: ``x`` ``(characters, 20, 1, size, size)`` in [0, 1] (1 = background),
    characters in the order :func:`rsn2.data.formats.omniglot.read_omniglot` gives, with their names."""

    x: Tensor
    names: list[str]
    notes: str = ""


def load_omniglot(data_dir: PathLike = None, size: int = 32, source: PathLike = None) -> OmniglotCharacters:
    """Every Omniglot drawing at ``size`` x ``size`` (Pillow greyscale, bicubic resize, divided by 255, as
    the GPM and WSN loaders prepare it), grouped by character.

    From the data directory, the two zips are checked by content: every PNG's SHA-256 against
    :data:`~rsn2.data.catalog.OMNIGLOT_CONTENT_SHA256` (the official archives and repacked copies both
    pass). ``source``: a folder holding ``images_background/`` and ``images_evaluation/`` (or both zips),
    read without that check.
    """
    if source is None:
        found = locate("omniglot", data_dir, verify=False)
        sources = {part: found.path(f"{part}.zip") for part in PARTS}
    else:
        from pathlib import Path

        root = Path(source)
        sources = {part: root / f"{part}.zip" if (root / f"{part}.zip").is_file() else root for part in PARTS}
    chars = read_omniglot(sources, size)
    if source is None and chars.content_sha256 != OMNIGLOT_CONTENT_SHA256:
        raise DataError(
            f"Omniglot in {found.folder} does not hold the official PNGs (content sha256 {chars.content_sha256}, "
            f"expected {OMNIGLOT_CONTENT_SHA256}); replace the zips with the official ones"
        )
    x = torch.from_numpy(chars.images).unsqueeze(2).float() / 255.0
    return OmniglotCharacters(x, chars.names)
