"""Choosing the positions a new subnetwork keeps: the top scores among the free positions."""

from __future__ import annotations

import torch
from torch import Tensor

from rsn2.errors import CapacityError


def compute_mask(importance: Tensor, default_mask: Tensor, count: int) -> Tensor:
    """Boolean mask of the ``count`` highest-``importance`` positions where ``default_mask`` is True.

    Ties are broken deterministically by the lower flat index. ``importance`` must be finite and
    ``count <= default_mask.sum()`` (callers check capacity first and raise a clear error).
    """
    candidates = default_mask.flatten()
    available = int(candidates.sum())
    if count > available:
        raise CapacityError(f"asked for {count} positions but only {available} are candidates")
    mask = torch.zeros_like(candidates)
    if count == available:
        mask |= candidates
        return mask.view_as(default_mask)
    scores = importance.detach().flatten().to(torch.float64)
    scores = torch.where(candidates, scores, torch.full_like(scores, -1.0))  # non-candidates rank last
    order = torch.sort(scores, descending=True, stable=True).indices
    mask[order[:count]] = True
    return mask.view_as(default_mask)


def compute_row_balanced_mask(importance: Tensor, default_mask: Tensor, count: int) -> Tensor:
    """Like :func:`compute_mask`, but every row (output unit: dim 0, a linear row or a conv filter)
    gets ``count // rows`` positions, and ``count % rows`` rows one more: those with the most
    candidates (ties: lower row index). Within a row the highest-``importance`` candidates win, ties
    by lower index.

    Row lengths differ by at most one, and so do the candidates left per row when they did before:
    a sequence of row-balanced selections whose requests fit the layer always fits every row.

    Raises:
        CapacityError: some row has fewer candidates than its share (possible only when an earlier
            selection of the layer was not row-balanced); names the row, its candidates and its share.
    """
    rows = default_mask.shape[0]
    candidates = default_mask.reshape(rows, -1)
    free = candidates.sum(dim=1)
    base, extra = divmod(count, rows)
    quota = torch.full((rows,), base, dtype=torch.long, device=free.device)
    most_free_first = torch.sort(-free, stable=True).indices
    quota[most_free_first[:extra]] += 1
    short = (quota > free).nonzero().flatten()
    if len(short):
        r = int(short[0])
        raise CapacityError(
            f"row-balanced selection: row {r} has {int(free[r])} free positions but its share is {int(quota[r])} "
            f"({len(short)} row(s) short); the layer's earlier subnetworks were not selected row-balanced"
        )
    scores = importance.detach().reshape(rows, -1).to(torch.float64)
    scores = torch.where(candidates, scores, torch.full_like(scores, -1.0))
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return (rank < quota[:, None]).view_as(default_mask)


def compute_input_balanced_mask(importance: Tensor, default_mask: Tensor, count: int) -> Tensor:
    """Like :func:`compute_row_balanced_mask`, but balanced over the layer's *inputs* instead of its
    units: every input position (a column of a linear kernel; an input channel and kernel tap of a
    convolution) gets ``count // inputs`` positions, or one more, the highest-``importance``
    candidates among its positions. So no task can take all the positions wired to the inputs
    that carry signal and leave later tasks the always-dark ones (later tasks starved on a shared
    input space); within an input's share the gradient still ranks.

    Raises:
        CapacityError: some input has fewer candidates than its share (possible only when an earlier
            selection of the layer was not input-balanced).
    """

    def inputs_first(t: Tensor) -> Tensor:
        return t.reshape(t.shape[0], -1).T  # (inputs, units)

    try:
        chosen = compute_row_balanced_mask(inputs_first(importance), inputs_first(default_mask), count)
    except CapacityError as exc:
        raise CapacityError(str(exc).replace("row-balanced", "input-balanced").replace("row ", "input ")) from None
    return chosen.reshape(-1, default_mask.shape[0]).T.reshape(default_mask.shape)
