"""Loading the datasets an experiment names, as training data and test sets per task."""

from __future__ import annotations

import os
from dataclasses import dataclass

from torch import Tensor

from rsn2.data import (
    SMOKE_TEST,
    SMOKE_TRAIN,
    Dataset,
    fashion_easy_hard,
    load_boston,
    load_cifar10,
    load_fashion_mnist,
    load_imdb,
    load_mnist,
    load_utkface,
)
from rsn2.experiments.config import ExperimentConfig
from rsn2.training import TaskData


@dataclass
class ExperimentTask:
    """One task's training data, test set, class names and data notes."""

    train: TaskData
    x_test: Tensor
    y_test: Tensor
    classes: list[str] | None
    notes: str


def load_datasets(
    config: ExperimentConfig, data_dir: str | os.PathLike[str] | None, smoke: bool = False
) -> dict[str, ExperimentTask]:
    """The data of every task of ``config``; each dataset is read once. ``smoke`` keeps the first
    256 training and 128 test samples of each (enough to exercise the whole pipeline in seconds)."""
    flatten = config.architecture == "fc-a" or len(config.input_shape) == 1
    cifar_size = {"conv-a": 28, "module": config.input_shape[-1] if len(config.input_shape) == 3 else None}
    cache: dict[str, Dataset] = {}

    def get(name: str) -> Dataset:
        if name not in cache:
            if name == "mnist":
                cache[name] = load_mnist(data_dir, flatten=flatten)
            elif name in ("fashion-mnist", "fashion-mnist-easy", "fashion-mnist-hard"):
                full = cache.get("fashion-mnist") or load_fashion_mnist(data_dir, flatten=flatten)
                cache["fashion-mnist"] = full
                cache["fashion-mnist-easy"], cache["fashion-mnist-hard"] = fashion_easy_hard(full)
            elif name == "cifar-10":
                cache[name] = load_cifar10(data_dir, size=cifar_size.get(config.architecture))
            elif name == "boston":
                cache[name] = load_boston(data_dir)
            elif name == "imdb":
                cache[name] = load_imdb(data_dir)
            elif name.startswith("utkface-"):
                for task, data in load_utkface(data_dir).items():
                    cache[f"utkface-{task}"] = data
        return cache[name]

    out = {}
    for task in config.tasks:
        d = get(task.dataset)
        n_train = min(SMOKE_TRAIN, len(d.train)) if smoke else len(d.train)
        n_test = min(SMOKE_TEST, len(d.test)) if smoke else len(d.test)
        notes = "; ".join(x for x in (d.notes, f"smoke subset: {n_train} train / {n_test} test" if smoke else "") if x)
        out[task.name] = ExperimentTask(
            TaskData(d.train.x[:n_train], d.train.y[:n_train], batch_size=task.batch_size),
            d.test.x[:n_test],
            d.test.y[:n_test],
            d.classes,
            notes,
        )
    return out
