import torch

from rsn2.continual.streams import permuted_tasks, split_tasks
from rsn2.data import Dataset, Split


def _dataset(n=40, d=12, classes=4):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, d, generator=gen)
    y = torch.arange(n) % classes
    return Dataset("toy", Split(x, y), Split(x[:10], y[:10]), [f"c{i}" for i in range(classes)])


def test_permuted_tasks_shuffle_pixels_by_a_seeded_permutation():
    data = _dataset()
    a, b, c = permuted_tasks(data, 3, seed=0), permuted_tasks(data, 3, seed=0), permuted_tasks(data, 3, seed=1)
    for task, same in zip(a, b, strict=True):
        assert torch.equal(task.train.x, same.train.x)
        assert torch.equal(task.train.y, data.train.y)
        # a permutation of each sample's pixels, nothing else
        assert torch.equal(task.train.x.sort(dim=1).values, data.train.x.sort(dim=1).values)
        assert torch.equal(task.x_test, data.test.x[:, task.order])
    assert not torch.equal(a[0].order, a[1].order)
    assert not torch.equal(a[0].order, c[0].order)


def test_split_tasks_relabel_each_pair_from_zero():
    tasks = split_tasks(_dataset(), 2)
    assert [t.name for t in tasks] == ["split0", "split1"]
    assert tasks[1].classes == ["c2", "c3"]
    assert set(tasks[1].train.y.tolist()) == {0, 1}
    assert len(tasks[0].train.x) == 20 and len(tasks[0].x_test) == 6
