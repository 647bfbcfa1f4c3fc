"""A reduced ResNet-18, written as an ordinary ``nn.Module``, made multitask with ``rsn2.multitask``.

The network is the one the continual-learning papers use on Split CIFAR and 5-Datasets (GEM,
Lopez-Paz & Ranzato 2017; WSN, Kang et al. 2022): ResNet-18 with 20 filters in the first stage
(20-40-80-160), batch norm after every convolution, residual blocks, global average pooling. Nothing
in it knows about rsn2. Run from this folder::

    python resnet.py --data-dir ../../../shared/data --samples 2000 --epochs 20 --out resnet.safetensors

Three Split CIFAR-10 tasks: ``vehicles`` and ``wild`` are trained together (in parallel, each in its
own subnetwork of every convolution, with its own batch norms), ``pets`` later, in a second stage
that leaves the first two bit-identical. Serve or export the saved file with the factory
``--factory resnet:build`` (run from this folder).

The same from a training file (``resnet.yaml`` names this module as its network)::

    python resnet.py --data-dir ../../../shared/data --samples 2000 --test-samples 500 --export-splits splits
    rsn2 train resnet.yaml --out resnet-file.safetensors
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import rsn2
from rsn2 import TaskData, TaskSpec, TrainConfig, fit_stage
from rsn2.network import linear


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, plus the input (through a 1x1 convolution when the
    shape changes)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ReducedResNet18(nn.Module):
    """ResNet-18 with ``nf`` filters in the first stage: ``(N, 3, 32, 32) -> (N, 8 * nf)`` features."""

    def __init__(self, nf: int = 20) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, nf, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(nf)
        planes, layers, in_planes = [nf, 2 * nf, 4 * nf, 8 * nf], [], nf
        for i, p in enumerate(planes):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(in_planes, p, stride), BasicBlock(p, p)))
            in_planes = p
        self.layers = nn.Sequential(*layers)
        self.features = 8 * nf

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)


def build() -> ReducedResNet18:
    """The factory ``rsn2 predict/export/serve --factory resnet:build`` calls: a fresh network."""
    return ReducedResNet18()


SPLITS = {"vehicles": (0, 1, 8, 9), "wild": (2, 4, 6), "pets": (3, 5, 7)}
"""Task -> its CIFAR-10 classes (airplane 0, automobile 1, bird 2, cat 3, deer 4, dog 5, frog 6,
horse 7, ship 8, truck 9)."""

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def tasks(keep_fraction: float = 0.3, features: int = 160) -> dict[str, TaskSpec]:
    """One classification task per split, each with its own linear head on the shared features."""
    return {
        name: TaskSpec(
            name,
            "classification",
            (3, 32, 32),
            head=[linear(features, len(classes))],
            keep_fraction=keep_fraction,
            classes=[CLASS_NAMES[c] for c in classes],
        )
        for name, classes in SPLITS.items()
    }


def split(x: Tensor, y: Tensor, classes: Sequence[int], samples: int | None = None) -> TaskData:
    """The samples of ``classes`` (at most ``samples``), labels renumbered 0..len(classes)-1."""
    keep = torch.isin(y, torch.tensor(classes))
    xs, ys = x[keep], y[keep]
    relabel = torch.full((10,), -1, dtype=torch.long)
    relabel[torch.tensor(classes)] = torch.arange(len(classes))
    n = len(xs) if samples is None else min(samples, len(xs))
    return TaskData(xs[:n], relabel[ys[:n]])


def train(
    train_data: dict[str, TaskData], config: TrainConfig, keep_fraction: float = 0.3, nf: int = 20
) -> tuple[rsn2.MultitaskNetwork, dict[str, bool]]:
    """Two tasks in parallel, the third later; returns the network and, per first-stage task,
    whether the second stage left its outputs bit-identical."""
    specs = tasks(keep_fraction, 8 * nf)
    net = rsn2.multitask(ReducedResNet18(nf), [specs["vehicles"], specs["wild"]])
    fit_stage(net, {t: train_data[t] for t in ("vehicles", "wild")}, config)
    probe = {t: train_data[t].x[:64] for t in ("vehicles", "wild")}
    net.eval()
    with torch.no_grad():
        before = {t: net(x, task=t) for t, x in probe.items()}
    net.add_tasks([specs["pets"]])
    fit_stage(net, {"pets": train_data["pets"]}, config)
    net.eval()
    with torch.no_grad():
        unchanged = {t: torch.equal(net(x, task=t), before[t]) for t, x in probe.items()}
    return net, unchanged


def write_image_folders(folder: Path, data: TaskData, task: str) -> None:
    """``data``'s images as PNG files, one subfolder per class name (as ``rsn2 train`` reads them)."""
    from PIL import Image

    names = [CLASS_NAMES[c] for c in SPLITS[task]]
    pixels = (data.x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, (image, label) in enumerate(zip(pixels, data.y.tolist(), strict=True)):
        target = folder / names[label]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target / f"{i:05d}.png")


def accuracy(net: rsn2.MultitaskNetwork, task: str, data: TaskData) -> float:
    """Test accuracy of ``task``, the user's own forward under ``net.task(task)``."""
    net.eval()
    with torch.no_grad(), net.task(task):
        return float((net(data.x).argmax(dim=1) == data.y).float().mean())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding cifar-10/ (default: $RSN2_DATA)")
    parser.add_argument("--samples", type=int, default=None, help="training samples per task (default: all)")
    parser.add_argument("--test-samples", type=int, default=None, help="test samples per task (default: all)")
    parser.add_argument("--epochs", type=int, default=30, help="most epochs per stage (default 30)")
    parser.add_argument("--out", default="resnet.safetensors", help="where to save the model")
    parser.add_argument(
        "--export-splits",
        metavar="DIR",
        help="instead of training: write each task's images as DIR/<task>/{train,test}/<class>/*.png, "
        "what resnet.yaml trains on with `rsn2 train resnet.yaml`",
    )
    args = parser.parse_args(argv)
    from rsn2.data import load_cifar10

    torch.manual_seed(0)
    cifar = load_cifar10(args.data_dir)
    train_data = {t: split(cifar.train.x, cifar.train.y, c, args.samples) for t, c in SPLITS.items()}
    test_data = {t: split(cifar.test.x, cifar.test.y, c, args.test_samples) for t, c in SPLITS.items()}
    if args.export_splits:
        for t in SPLITS:
            write_image_folders(Path(args.export_splits) / t / "train", train_data[t], t)
            write_image_folders(Path(args.export_splits) / t / "test", test_data[t], t)
        print(f"wrote {args.export_splits}/<task>/{{train,test}}/<class>/*.png for {list(SPLITS)}")
        return 0
    config = TrainConfig(batch_size=64, max_epochs=args.epochs, patience=5, progress=False)
    net, unchanged = train(train_data, config)
    for t in SPLITS:
        print(f"{t:<9} test accuracy {accuracy(net, t, test_data[t]):.4f}")
    print(f"first-stage tasks bit-identical after the second stage: {unchanged}")
    print(f"wrote {args.out} ({rsn2.save_model(net, args.out):,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
