"""The networks the continual-learning papers use, as plain ``nn.Module`` s that benchmark files name
(``network: {module: "networks:lenet_large"}``) and rsn2 converts (``rsn2.multitask``). Each
outputs flat features; every task gets its own dense head after it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from torch import Tensor, nn

RESNET_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "own-model" / "resnet.py"
"""The reduced ResNet-18 of the own-model example: one definition, used here as it is."""


class LeNetLarge(nn.Module):
    """WSN's (and GPM's) LeNet for Omniglot Rotation, 64-128-2500-1500: two 5x5 convolutions with
    ReLU and 3x3 stride-2 max pooling, then two dense layers, no biases. ``(N, 1, 32, 32) -> (N, 1500)``;
    about 24.4 M weights, 20.5 M of them in ``fc1``."""

    def __init__(self, in_channels: int = 1, image_size: int = 32) -> None:
        super().__init__()
        side = ((image_size + 1) // 2 + 1) // 2  # two 3x3 stride-2 poolings with padding 1
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 5, padding=2, bias=False),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, padding=1),
            nn.Conv2d(64, 128, 5, padding=2, bias=False),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, padding=1),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(128 * side * side, 2500, bias=False),
            nn.ReLU(),
            nn.Linear(2500, 1500, bias=False),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def lenet_large() -> nn.Module:
    """A fresh :class:`LeNetLarge` for 1 x 32 x 32 images (what Omniglot Rotation feeds it)."""
    return LeNetLarge()


def reduced_resnet18() -> nn.Module:
    """A fresh reduced ResNet-18 (20 filters, batch norm, residual blocks: the network of GEM's and
    WSN's Split CIFAR and 5-Datasets), ``(N, 3, 32, 32) -> (N, 160)``, from ``examples/own-model/resnet.py``."""
    spec = importlib.util.spec_from_file_location("own_model_resnet", RESNET_EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ReducedResNet18()
