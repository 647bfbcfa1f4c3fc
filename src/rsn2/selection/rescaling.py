"""What happens to a new subnetwork's kept weights right after selection: drawn anew, then rescaled."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rsn2.errors import SpecError


def fan_in_scale(keep_fraction: float) -> float:
    """Variance-preserving factor ``1/sqrt(keep_fraction)`` for a subnetwork keeping that fraction of a
    layer (the factor ``rescale`` gives its weights, and ``rescale_lr`` its learning rate)."""
    if not 0.0 < keep_fraction <= 1.0:
        raise SpecError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    return 1.0 / math.sqrt(keep_fraction)


def rescale_kept(weight: Tensor, chosen: Tensor, mode: str, reading: Tensor | None = None) -> None:
    """Multiply the ``chosen`` entries of ``weight`` by ``1/sqrt(kept fraction)`` of the layer or of their row.

    ``reading``: every position the subnetwork computes with, when that is more than ``chosen`` (it
    also reads earlier subnetworks' positions: forward transfer); its fraction sets the factor."""
    basis = chosen if reading is None else reading
    if mode == "layer":
        weight[chosen] *= fan_in_scale(max(int(basis.sum()), 1) / basis.numel())
    elif mode == "unit":
        rows = basis.reshape(basis.shape[0], -1)
        kept = rows.sum(dim=1, keepdim=True).clamp(min=1).to(weight.dtype)
        factor = torch.sqrt(rows.shape[1] / kept).expand_as(rows).reshape(chosen.shape)
        weight[chosen] *= factor[chosen]


def reinitialise_kept(weight: Tensor, chosen: Tensor, generator_seed: int) -> None:
    """Draw the ``chosen`` entries of ``weight`` anew, uniform in the layer's Glorot range."""
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    gen = torch.Generator().manual_seed(generator_seed)
    fresh = (torch.rand(int(chosen.sum()), generator=gen, dtype=torch.float64) * 2 - 1) * bound
    weight[chosen] = fresh.to(weight.dtype).to(weight.device)
