"""Task streams of the standard continual-learning benchmarks, built from rsn2's dataset loaders.

- ``permuted``: every task is the whole dataset with its pixels shuffled by one fixed permutation
  (Permuted-MNIST); the permutations are drawn from the run's seed.
- ``split``: the dataset's classes cut into consecutive groups (``[0, 1], [2, 3], ...``), each group
  one task whose labels are renumbered from 0 (Split-MNIST, Split-CIFAR-10).
- ``rotation`` (Omniglot only): Omniglot Rotation as GPM and WSN build it (:func:`rotation_tasks`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor

from rsn2.data import (
    SMOKE_TEST,
    SMOKE_TRAIN,
    Dataset,
    class_subset,
    load_cifar10,
    load_fashion_mnist,
    load_mnist,
    load_omniglot,
)
from rsn2.data.datasets import OmniglotCharacters
from rsn2.errors import ConfigError
from rsn2.training import TaskData

STREAM_KINDS = ("permuted", "split", "rotation")
STREAM_DATASETS = ("mnist", "fashion-mnist", "cifar-10", "omniglot")
ROTATION_TASKS, ROTATION_CLASSES = 100, 12
"""Omniglot Rotation's size in GPM and WSN: 100 tasks of 12 characters."""
ROTATION_TRAIN = 60
"""Of a character's 80 samples (20 drawings, each also rotated by 90, 180 and 270 degrees), how many train."""


@dataclass
class ContinualTask:
    """One task of a stream: training inputs and targets, test set and class names.

    Shapes: ``x_train`` ``(N, *input_shape)``, ``y_train`` ``(N,)`` class ids in ``0..len(classes)-1``;
    the test set alike. A permuted task keeps the shared unpermuted ``x_train`` and its ``order``, and
    :attr:`train` applies it when asked (50 permuted copies of MNIST would take 9 GB).
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: list[str]
    order: Tensor | None = None

    @property
    def train(self) -> TaskData:
        """The training data (permuted now, for a permuted task)."""
        x = self.x_train if self.order is None else self.x_train[:, self.order]
        return TaskData(x, self.y_train)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def load_stream_dataset(name: str, data_dir: str | os.PathLike[str] | None, flatten: bool) -> Dataset:
    """The dataset ``name`` (one of :data:`STREAM_DATASETS`), images ``(N, C, H, W)`` or flat ``(N, C*H*W)``."""
    if name == "mnist":
        return load_mnist(data_dir, flatten=flatten)
    if name == "fashion-mnist":
        return load_fashion_mnist(data_dir, flatten=flatten)
    if name == "cifar-10":
        return load_cifar10(data_dir, flatten=flatten)
    raise ConfigError(f"unknown stream dataset {name!r}; allowed: {list(STREAM_DATASETS)}")


def permuted_tasks(data: Dataset, tasks: int, seed: int, prefix: str = "perm") -> list[ContinualTask]:
    """``tasks`` copies of ``data`` (flat inputs ``(N, D)``), each with its pixels in one random order.

    The permutations come from a generator seeded by ``seed``: a stream is the same for every method
    of a run and differs between seeds.
    """
    if data.train.x.dim() != 2:
        raise ConfigError("a permuted stream needs flat inputs (N, D); use a network of linear layers")
    gen = torch.Generator().manual_seed(int(seed) * 7919 + 17)
    width = data.train.x.shape[1]
    out = []
    for i in range(tasks):
        order = torch.randperm(width, generator=gen)
        out.append(
            ContinualTask(
                f"{prefix}{i}",
                data.train.x,
                data.train.y,
                data.test.x[:, order],
                data.test.y,
                list(data.classes or [str(c) for c in range(int(data.train.y.max()) + 1)]),
                order,
            )
        )
    return out


def split_tasks(data: Dataset, classes_per_task: int, prefix: str = "split") -> list[ContinualTask]:
    """``data``'s classes in consecutive groups of ``classes_per_task``, one task each, relabelled from 0."""
    n_classes = len(data.classes) if data.classes else int(data.train.y.max()) + 1
    if classes_per_task < 1 or n_classes % classes_per_task:
        raise ConfigError(f"classes_per_task must divide the {n_classes} classes evenly, got {classes_per_task}")
    out = []
    for i, start in enumerate(range(0, n_classes, classes_per_task)):
        group = tuple(range(start, start + classes_per_task))
        part = class_subset(data, group, f"{data.name}-{i}")
        classes = list(part.classes or [str(c) for c in group])
        out.append(ContinualTask(f"{prefix}{i}", part.train.x, part.train.y, part.test.x, part.test.y, classes))
    return out


def rotation_tasks(
    chars: OmniglotCharacters, tasks: int, classes_per_task: int, seed: int, prefix: str = "omniglot"
) -> list[ContinualTask]:
    """Omniglot Rotation as WSN's ``dataloader/omniglot_rotation.py`` builds it (after GPM).

    The first ``tasks * classes_per_task`` characters each give 80 samples with ONE label: their 20
    drawings and the same drawings rotated by 90, 180 and 270 degrees (``torch.rot90``, counter-
    clockwise, as ``np.rot90``). A character's samples are shuffled (a generator seeded by ``seed``),
    the first 60 train and the last 20 test. Task ``i`` holds characters ``i*k .. i*k + k - 1``
    (``k = classes_per_task``) labelled ``0 .. k-1``, its samples shuffled once more.
    """
    n = tasks * classes_per_task
    if n > chars.x.shape[0]:
        raise ConfigError(f"{tasks} tasks of {classes_per_task} characters need {n}; Omniglot has {chars.x.shape[0]}")
    x = chars.x[:n]  # (n, 20, 1, H, W)
    x = torch.cat([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)], dim=1)  # (n, 80, 1, H, W)
    gen = torch.Generator().manual_seed(int(seed) * 104729 + 7)
    x = torch.stack([c[torch.randperm(c.shape[0], generator=gen)] for c in x])
    out = []
    for i in range(tasks):
        part = x[i * classes_per_task : (i + 1) * classes_per_task]
        labels = torch.arange(classes_per_task).repeat_interleave(part.shape[1]).view(classes_per_task, -1)
        splits = []
        for sl in (slice(0, ROTATION_TRAIN), slice(ROTATION_TRAIN, None)):
            xs, ys = part[:, sl].reshape(-1, *part.shape[2:]), labels[:, sl].reshape(-1)
            order = torch.randperm(len(ys), generator=gen)
            splits.append((xs[order].contiguous(), ys[order].contiguous()))
        names = [chars.names[i * classes_per_task + j] for j in range(classes_per_task)]
        (xt, yt), (xv, yv) = splits
        out.append(ContinualTask(f"{prefix}{i}", xt, yt, xv, yv, names))
    return out


def build_stream(
    kind: str,
    dataset: str,
    *,
    tasks: int | None = None,
    classes_per_task: int | None = None,
    flatten: bool,
    seed: int,
    data_dir: str | os.PathLike[str] | None = None,
    smoke: bool = False,
) -> list[ContinualTask]:
    """The benchmark's tasks in training order. ``smoke`` keeps 256 training and 128 test samples per task."""
    if kind == "rotation" or dataset == "omniglot":
        if kind != "rotation" or dataset != "omniglot" or flatten:
            raise ConfigError("Omniglot runs as a rotation stream (kind: rotation) of images, and only Omniglot does")
        stream = rotation_tasks(
            load_omniglot(data_dir), tasks or ROTATION_TASKS, classes_per_task or ROTATION_CLASSES, seed
        )
        return _smoke(stream) if smoke else stream
    data = load_stream_dataset(dataset, data_dir, flatten)
    if kind == "permuted":
        if tasks is None:
            raise ConfigError("a permuted stream needs 'tasks' (how many permutations)")
        stream = permuted_tasks(data, tasks, seed)
    elif kind == "split":
        if classes_per_task is None:
            raise ConfigError("a split stream needs 'classes_per_task'")
        stream = split_tasks(data, classes_per_task)
        if tasks is not None:
            stream = stream[:tasks]
    else:
        raise ConfigError(f"unknown stream kind {kind!r}; allowed: {list(STREAM_KINDS)}")
    return _smoke(stream) if smoke else stream


def _smoke(stream: list[ContinualTask]) -> list[ContinualTask]:
    """The first 256 training and 128 test samples of each task."""
    for t in stream:
        t.x_train, t.y_train = t.x_train[:SMOKE_TRAIN], t.y_train[:SMOKE_TRAIN]
        t.x_test, t.y_test = t.x_test[:SMOKE_TEST], t.y_test[:SMOKE_TEST]
    return stream
