"""Small ordinary ``nn.Module`` networks, written as users write them, for the conversion tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rsn2.network import TaskSpec, linear


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input (a ResNet basic block without downsampling)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(x + self.bn2(self.conv2(out)))


class TinyResNet(nn.Module):
    """Stem, one residual block, global pooling: ``(N, 3, 8, 8) -> (N, 8)``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.block = ResidualBlock(8)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.pool(self.block(torch.relu(self.bn(self.stem(x))))), 1)


class TinyEncoder(nn.Module):
    """Token embedding, one ``nn.TransformerEncoderLayer``, mean over positions: ``(N, 6) int64 -> (N, 8)``."""

    def __init__(self, vocabulary: int = 20) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocabulary, 8)
        self.encoder = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(self.embed(x)).mean(dim=1)


class NormMLP(nn.Module):
    """Linear-LayerNorm-ReLU, Conv1d-GroupNorm-BatchNorm1d over a 1-D signal: ``(N, 2, 6) -> (N, 8)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=1)
        self.group = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(24, 8)
        self.layer_norm = nn.LayerNorm(8)
        self.batch_norm = nn.BatchNorm1d(8)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.group(self.conv(x))).flatten(1)
        return torch.relu(self.batch_norm(self.layer_norm(self.fc(h))))


class FlatBatchNormNet(nn.Module):
    """Linear-BatchNorm1d-ReLU twice over 8 features: ``(N, 8) -> (N, 16)`` (the continual tests' module)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


MODELS = {
    "resnet": (TinyResNet, (3, 8, 8), False),
    "encoder": (TinyEncoder, (6,), True),
    "norms": (NormMLP, (2, 6), False),
}
"""name -> (class, one sample's input shape, whether the input is token ids)."""


def tasks_for(model: str, names: tuple[str, ...] = ("a", "b"), keep: float = 0.3) -> list[TaskSpec]:
    """Classification tasks with 3 classes each on ``model``'s input, a linear head per task."""
    _, shape, tokens = MODELS[model]
    return [
        TaskSpec(n, "classification", shape, head=[linear(8, 3)], keep_fraction=keep, token_input=tokens) for n in names
    ]


def inputs_for(model: str, n: int = 32, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``(x, y)``: random inputs for ``model`` and 3-class labels."""
    _, shape, tokens = MODELS[model]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 20, (n, *shape), generator=gen) if tokens else torch.randn((n, *shape), generator=gen)
    return x, torch.randint(0, 3, (n,), generator=gen)
