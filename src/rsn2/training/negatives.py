"""Self-made negatives: teaching a task's subnetwork to be unsure of inputs that are not its own.

A classification head trained on its task's data alone is as sure of every other task's inputs as of
its own, so the output entropy cannot tell tasks apart (task inference, :mod:`rsn2.network.task_inference`).
With ``TrainConfig(negatives=w)``, every training batch of an image task also carries negatives made
from the batch itself, no other task's data: the first half of the batch rotated by 90, 180 or 270
degrees (180 only for images that are not square), the second half with its image cut into a 4x4
grid of patches (2x2, or none, where the sides do not divide) put back in a fixed shuffled order.
Their target is the uniform distribution: ``w`` times the cross-entropy to uniform,
``-mean(log_softmax)``, is added to the task's loss. Which negative a sample becomes depends only on
its position in the batch, so training stays deterministic and resumable.

Inputs: a task's samples are ``(C, H, W)`` images, or flat vectors of a square one-channel image's
``H * W`` values (the flattened MNIST-style input of an MLP).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from rsn2.errors import SpecError

PATCH_ORDER = (5, 10, 15, 0, 9, 14, 3, 4, 13, 2, 7, 8, 1, 6, 11, 12)
"""Where each of the 4x4 patches goes (a fixed order that moves every patch)."""


def image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """``(C, H, W)`` of a task's samples: their own shape, or a flat square image's ``(1, s, s)``.

    Raises:
        SpecError: the samples are neither images nor a flat square image.
    """
    if len(input_shape) == 3:
        c, h, w = input_shape
        return int(c), int(h), int(w)
    if len(input_shape) == 1 and math.isqrt(int(input_shape[0])) ** 2 == int(input_shape[0]):
        side = math.isqrt(int(input_shape[0]))
        return 1, side, side
    raise SpecError(
        f"negatives are made from images: samples of shape (C, H, W) or a flat square image (H*W values), "
        f"got {tuple(input_shape)}"
    )


def make_negatives(x: Tensor, input_shape: Sequence[int]) -> Tensor:
    """Negatives of a batch ``x`` (shape ``(N, *input_shape)``), same shape and order (see the module
    docstring)."""
    c, h, w = image_shape(input_shape)
    images = x.reshape(len(x), c, h, w)
    half = len(x) // 2
    rotated = _rotated(images[:half], h == w)
    shuffled = _patch_shuffled(images[half:])
    return torch.cat([rotated, shuffled]).reshape(x.shape)


def uniform_target_loss(logits: Tensor) -> Tensor:
    """Mean cross-entropy of ``logits`` (``(N, classes)``) to the uniform distribution."""
    return -torch.log_softmax(logits.float(), dim=-1).mean()


def _rotated(images: Tensor, square: bool) -> Tensor:
    if not square:
        return torch.rot90(images, 2, (2, 3))
    turns = torch.arange(len(images)) % 3 + 1
    out = images.clone()
    for k in (1, 2, 3):
        chosen = turns == k
        if chosen.any():
            out[chosen] = torch.rot90(images[chosen], k, (2, 3))
    return out


def _patch_shuffled(images: Tensor) -> Tensor:
    n, c, h, w = images.shape
    grid = 4 if h % 4 == 0 and w % 4 == 0 else 2 if h % 2 == 0 and w % 2 == 0 else 0
    if grid == 0 or n == 0:
        return torch.rot90(images, 2, (2, 3))
    ph, pw = h // grid, w // grid
    patches = images.reshape(n, c, grid, ph, grid, pw).permute(0, 2, 4, 1, 3, 5).reshape(n, grid * grid, c, ph, pw)
    order = torch.tensor(PATCH_ORDER if grid == 4 else (3, 0, 1, 2), device=images.device)
    moved = patches[:, order]
    return moved.reshape(n, grid, grid, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


__all__ = ["PATCH_ORDER", "image_shape", "make_negatives", "uniform_target_loss"]
