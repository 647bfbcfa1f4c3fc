"""Owner maps: which subnetwork owns each position of a kernel.

An owner map is a ``uint8`` tensor of the kernel's shape. Value ``k`` (0..254) means "owned by the
layer's k-th subnetwork"; :data:`FREE` (255) means "owned by nobody yet". Because every position
holds exactly one value, subnetworks are disjoint by construction (paper Eq. 3).
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

import torch
from torch import Tensor

from rsn2.errors import OwnershipError, TaskError

FREE: Final[int] = 255
"""Owner value of a position that no subnetwork owns."""

MAX_SUBNETWORKS: Final[int] = 255
"""Most subnetworks one layer can hold (ids 0..254)."""


def empty_owner(shape: torch.Size | tuple[int, ...], device: torch.device | None = None) -> Tensor:
    """An owner map of ``shape`` with every position free."""
    return torch.full(tuple(shape), FREE, dtype=torch.uint8, device=device)


def check_owner(owner: Tensor, shape: torch.Size | tuple[int, ...], n_subnetworks: int, where: str) -> None:
    """Raise :class:`OwnershipError` unless ``owner`` is a valid owner map.

    Valid: dtype uint8, the given shape, and every value either :data:`FREE` or a subnetwork id
    below ``n_subnetworks``.
    """
    if owner.dtype != torch.uint8:
        raise OwnershipError(f"{where}: owner map must be uint8, got {owner.dtype}")
    if tuple(owner.shape) != tuple(shape):
        raise OwnershipError(f"{where}: owner map has shape {tuple(owner.shape)}, kernel has {tuple(shape)}")
    used = owner[owner != FREE]
    if used.numel() and int(used.max()) >= n_subnetworks:
        raise OwnershipError(
            f"{where}: owner map refers to subnetwork id {int(used.max())}, "
            f"but the layer has only {n_subnetworks} subnetworks (ids 0..{n_subnetworks - 1}, {FREE}=free)"
        )


def task_axis(values: Tensor, owner: Tensor, n_subnetworks: int) -> Tensor:
    """The paper's task-axis view: shape ``(n_subnetworks, *values.shape)``.

    Entry ``[k, ...]`` equals ``values`` where subnetwork ``k`` owns the position and 0 elsewhere,
    so summing over the first axis never adds two non-zero entries (paper Eq. 3).
    """
    ids = torch.arange(n_subnetworks, device=owner.device, dtype=torch.uint8)
    masks = owner.unsqueeze(0) == ids.view(-1, *([1] * owner.dim()))
    return values.unsqueeze(0) * masks.to(values.dtype)


def requested_positions(keep_fraction: float, total: int) -> int:
    """Positions a subnetwork keeping ``keep_fraction`` of a ``total``-position layer gets (at least 1).

    Rounded down, so that keep fractions summing to 1 fit (five 20% subnetworks of a 288-position
    layer get 57 positions each, not 58), except in a layer with fewer positions than subnetworks,
    where each still asks for one.
    """
    return max(1, math.floor(keep_fraction * total + 1e-9))


def encode_state(value: dict[str, Any]) -> Tensor:
    """A JSON-able mapping as a ``uint8`` tensor, so that a module's ``state_dict()`` holds tensors only
    (``{k: v.clone() for k, v in sd.items()}`` works on it)."""
    return torch.tensor(list(json.dumps(value, sort_keys=True).encode()), dtype=torch.uint8)


def decode_state(value: Tensor | dict[str, Any]) -> dict[str, Any]:
    """The mapping :func:`encode_state` encoded (a plain mapping, as older state dicts hold, passes through)."""
    if isinstance(value, dict):
        return value
    try:
        decoded = json.loads(bytes(value.detach().cpu().to(torch.uint8).tolist()).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise OwnershipError(f"extra state is not an rsn2 state tensor: {exc}") from None
    if not isinstance(decoded, dict):
        raise OwnershipError(f"extra state must hold a mapping, got {type(decoded).__name__}")
    return decoded


def check_new_subnetwork(name: object, existing: list[str]) -> None:
    """Raise unless ``name`` may be added to a layer holding ``existing``: a non-empty string without
    '.', not there yet, within :data:`MAX_SUBNETWORKS`."""
    if not isinstance(name, str) or not name or "." in name:
        raise TaskError(f"subnetwork name must be a non-empty string without '.', got {name!r}")
    if name in existing:
        raise TaskError(f"subnetwork {name!r} already exists in this layer")
    if len(existing) >= MAX_SUBNETWORKS:
        raise OwnershipError(f"a layer holds at most {MAX_SUBNETWORKS} subnetworks")


def add_stored_subnetworks(state: Tensor | dict[str, Any], existing: list[str], add: Any) -> None:
    """Register (with ``add(name)``) the subnetworks a layer's extra ``state`` names beyond
    ``existing``; raise :class:`OwnershipError` when the two lists disagree."""
    names = list(decode_state(state)["subnetworks"])
    for name in names[len(existing) :]:
        add(name)
    if names != existing:
        raise OwnershipError(f"state has subnetworks {names}, layer has {existing}")
