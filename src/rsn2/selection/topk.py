"""Choosing the positions a new subnetwork keeps: the top scores among the free positions."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def compute_mask(importance: Tensor, default_mask: Tensor, count: int) -> Tensor:
    """Boolean mask of the ``count`` highest-``importance`` positions where ``default_mask`` is True.

    Ties are broken deterministically by the lower flat index. ``importance`` must be finite and
    ``count <= default_mask.sum()`` (callers check capacity first and raise a clear error).
    """
    candidates = default_mask.flatten()
    available = int(candidates.sum())
    if count > available:
        raise ValueError(f"asked for {count} positions but only {available} are candidates")
    mask = torch.zeros_like(candidates)
    if count == available:
        mask |= candidates
        return mask.view_as(default_mask)
    scores = importance.detach().flatten().to(torch.float64)
    scores = torch.where(candidates, scores, torch.full_like(scores, -1.0))  # non-candidates rank last
    order = torch.sort(scores, descending=True, stable=True).indices
    mask[order[:count]] = True
    return mask.view_as(default_mask)


def requested_positions(keep_fraction: float, total: int) -> int:
    """Positions a subnetwork keeping ``keep_fraction`` of a ``total``-position layer gets (at least 1).

    Rounded down, so that keep fractions summing to 1 always fit (five 20% subnetworks of a
    288-position layer get 57 positions each, not 58).
    """
    return max(1, math.floor(keep_fraction * total + 1e-9))
