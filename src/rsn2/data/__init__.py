"""The paper's datasets read from their standard files, with a checksummed downloader."""

from rsn2.data.catalog import CATALOG, dataset_info
from rsn2.data.datasets import (
    CIFAR10_CLASSES,
    FASHION_EASY,
    FASHION_HARD,
    SMOKE_TEST,
    SMOKE_TRAIN,
    BostonScaling,
    Dataset,
    Split,
    age_decade,
    class_subset,
    fashion_easy_hard,
    load_boston,
    load_cifar10,
    load_fashion_mnist,
    load_imdb,
    load_mnist,
    load_omniglot,
    load_utkface,
)
from rsn2.data.download import download_dataset, download_file
from rsn2.data.location import data_dir, locate
from rsn2.data.text import Vocabulary, tokenize

__all__ = [
    "CATALOG",
    "CIFAR10_CLASSES",
    "FASHION_EASY",
    "FASHION_HARD",
    "SMOKE_TEST",
    "SMOKE_TRAIN",
    "BostonScaling",
    "Dataset",
    "Split",
    "Vocabulary",
    "age_decade",
    "class_subset",
    "data_dir",
    "dataset_info",
    "download_dataset",
    "download_file",
    "fashion_easy_hard",
    "load_boston",
    "load_cifar10",
    "load_fashion_mnist",
    "load_imdb",
    "load_mnist",
    "load_omniglot",
    "load_utkface",
    "locate",
    "tokenize",
]
