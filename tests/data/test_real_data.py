"""Real-data checks against ../shared/data: counts, shapes, value ranges, label balance, memory."""

import json
import subprocess
import sys

import pytest
import torch

from rsn2.data import (
    fashion_easy_hard,
    load_boston,
    load_cifar10,
    load_fashion_mnist,
    load_imdb,
    load_mnist,
    load_utkface,
)

pytestmark = pytest.mark.real_data


def test_mnist(shared_data):
    d = load_mnist(shared_data, flatten=True)
    assert d.train.x.shape == (60000, 784) and d.test.x.shape == (10000, 784)
    assert float(d.train.x.min()) == 0.0 and float(d.train.x.max()) == 1.0
    assert abs(float(d.train.x.mean()) - 0.1307) < 1e-3
    assert torch.bincount(d.test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_fashion_mnist_and_easy_hard(shared_data):
    d = load_fashion_mnist(shared_data)
    assert d.train.x.shape == (60000, 1, 28, 28)
    assert torch.bincount(d.train.y).tolist() == [6000] * 10
    easy, hard = fashion_easy_hard(d)
    assert len(easy.train) == len(hard.train) == 30000 and len(easy.test) == 5000
    assert torch.bincount(easy.test.y).tolist() == [1000] * 5
    assert easy.classes == ["Trouser", "Sandal", "Sneaker", "Bag", "Ankle boot"]


@pytest.mark.slow
def test_cifar10_resized_keeps_three_channels(shared_data):
    d = load_cifar10(shared_data, size=28)
    assert d.train.x.shape == (50000, 3, 28, 28) and d.test.x.shape == (10000, 3, 28, 28)
    assert torch.bincount(d.test.y).tolist() == [1000] * 10
    assert 0.0 <= float(d.train.x.min()) and float(d.train.x.max()) <= 1.0
    assert "lossy" in d.notes


def test_boston_split_and_scaling(shared_data):
    d = load_boston(shared_data)
    assert d.train.x.shape == (404, 13) and d.test.x.shape == (102, 13)
    assert float(d.train.x.min()) == 0.0 and float(d.train.x.max()) == 1.0
    assert float(d.train.y.min()) == 0.0 and float(d.train.y.max()) == 1.0
    medv = d.extra["scaling"].inverse_target(torch.cat([d.train.y, d.test.y]))
    assert abs(float(medv.mean()) - 22.53) < 0.01 and float(medv.max()) == pytest.approx(50.0)


@pytest.mark.slow
def test_imdb(shared_data):
    d = load_imdb(shared_data)
    assert d.train.x.shape == (25000, 128) and d.test.x.shape == (25000, 128)
    assert torch.bincount(d.train.y).tolist() == [12500, 12500]
    assert int(d.train.x.max()) == d.extra["vocabulary"].num_embeddings - 1 == 10001
    assert d.extra["vocabulary"].words[0] == "the"


@pytest.mark.slow
def test_utkface(shared_data):
    tasks = load_utkface(shared_data)
    age = tasks["age"]
    assert len(age.train) + len(age.test) == 23704 and len(age.test) == 4741
    assert age.train.x.shape[1:] == (3, 32, 32)
    all_age = torch.cat([age.train.y, age.test.y])
    assert torch.bincount(all_age).tolist() == [3217, 1659, 7784, 4338, 2100, 2211, 1170, 685, 453, 87]
    gender = tasks["gender"]
    assert torch.bincount(torch.cat([gender.train.y, gender.test.y])).tolist() == [12390, 11314]
    assert tasks["race"].train.x is age.train.x  # one image tensor for the three tasks


@pytest.mark.slow
@pytest.mark.parametrize("call", ["load_cifar10(D, size=28)", "load_utkface(D)", "load_mnist(D)", "load_imdb(D)"])
def test_full_load_needs_at_most_twice_its_size(shared_data, call):
    """Peak resident memory grows by at most 2x the loaded tensors' bytes (measured in a fresh process)."""
    code = f"""
import json, resource, torch
from rsn2.data import *
D = {str(shared_data)!r}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
d = {call}
ds = d.values() if isinstance(d, dict) else [d]
seen, size = set(), 0
for x in ds:
    for t in (x.train.x, x.train.y, x.test.x, x.test.y):
        if id(t) not in seen:
            seen.add(id(t)); size += t.numel() * t.element_size()
print(json.dumps({{"growth": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before, "size": size}}))
"""
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert out["growth"] <= 2 * out["size"], out
