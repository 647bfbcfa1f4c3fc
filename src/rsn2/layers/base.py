"""The shared machinery of multitask kernel layers (linear and convolution).

A multitask layer stores ONE dense kernel in PyTorch's usual layout, a ``uint8`` owner map of the
same shape (see :mod:`rsn2.layers.ownership`) and one bias per subnetwork. A forward pass for a
subnetwork uses only the positions it owns, plus, with forward transfer, the positions of frozen
subnetworks added before it that it *reads* (read-only, their frozen values: :meth:`set_reads`);
every other position reads as zero.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, cast

import torch
from torch import Tensor, nn

from rsn2.errors import FrozenSubnetworkError, OwnershipError, TaskError
from rsn2.layers.ownership import (
    FREE,
    add_stored_subnetworks,
    check_new_subnetwork,
    check_owner,
    decode_state,
    empty_owner,
    encode_state,
    task_axis,
)
from rsn2.layers.routing import mixture_for, reads_frozen, subnetwork_for

READS = "reads_"
"""Prefix of the buffers holding each subnetwork's read set (``reads_<subnetwork>``)."""


class MultitaskKernelLayer(nn.Module):
    """Base class: one kernel, one owner map, one bias per subnetwork.

    Subclasses create ``weight`` (shape given to ``__init__``) and implement :meth:`_apply_kernel`.

    Attributes:
        weight: the dense kernel, shared storage of every subnetwork.
        owner: ``uint8`` buffer of ``weight``'s shape; subnetwork id per position or ``FREE``.
        biases: one bias vector of shape ``(bias_features,)`` per subnetwork name (if ``bias``).
        subnetworks: subnetwork names; the index of a name is its id in ``owner``.
        reads_<name>: ``bool`` buffer of ``weight``'s shape, for a subnetwork that reads positions of
            earlier frozen subnetworks (forward transfer; :meth:`set_reads`); absent otherwise.
    """

    owner: Tensor

    def __init__(
        self,
        weight_shape: tuple[int, ...],
        bias_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(weight_shape, **factory))
        self.register_buffer("owner", empty_owner(weight_shape, device=torch.device(device) if device else None))
        self.biases = nn.ParameterDict()
        self.subnetworks: list[str] = []
        self.has_bias = bias
        self.bias_features = bias_features
        self._factory = factory
        self.frozen: set[str] = set()  # subnetworks that read their positions from ``frozen_kernel``
        self.frozen_kernel: Tensor | None = None  # set by freeze(); not saved (rebuilt from the weight)
        self._mask_cache: dict[int, tuple[tuple[int, int], Tensor, bool]] = {}
        self._float_mask_cache: dict[int, tuple[Tensor, Tensor]] = {}
        self.reset_parameters()

    # ----------------------------------------------------------------- initialisation
    def reset_parameters(self) -> None:
        """Glorot-uniform kernel (the paper's Keras default); biases start at zero."""
        nn.init.xavier_uniform_(self.weight)
        for b in self.biases.values():
            nn.init.zeros_(b)

    # ----------------------------------------------------------------- subnetworks
    def add_subnetwork(self, name: str) -> int:
        """Register a new, empty subnetwork and its zero bias; returns its id."""
        check_new_subnetwork(name, self.subnetworks)
        self.subnetworks.append(name)
        if self.has_bias:
            self.biases[name] = nn.Parameter(torch.zeros(self.bias_features, **self._factory_now()))
        return len(self.subnetworks) - 1

    def remove_last_subnetwork(self, name: str) -> None:
        """Undo :meth:`add_subnetwork` for the most recently added subnetwork, freeing its positions."""
        if not self.subnetworks or self.subnetworks[-1] != name:
            raise TaskError(f"only the most recently added subnetwork can be removed, not {name!r}")
        sid = len(self.subnetworks) - 1
        with torch.no_grad():
            self.owner[self.owner == sid] = FREE
        self._buffers.pop(READS + name, None)
        self.subnetworks.pop()
        if self.has_bias:
            del self.biases[name]
        self._clear_caches()

    def subnetwork_id(self, name: str) -> int:
        """The owner-map id of subnetwork ``name``."""
        try:
            return self.subnetworks.index(name)
        except ValueError:
            raise TaskError(f"layer has no subnetwork {name!r}; it has {self.subnetworks or 'none'}") from None

    def mask(self, name: str, *, cache: bool = True) -> Tensor:
        """Boolean tensor of ``weight``'s shape: True where ``name`` owns the position.

        Kept for the next call while the owner map is unchanged (the masked forward pass reads it at
        every step); ``cache=False`` computes it without keeping it (a one-off copy of a share)."""
        sid = self.subnetwork_id(name)
        return self._cached_mask(sid)[0] if cache else self.owner == sid

    def reads(self, name: str) -> Tensor | None:
        """The positions of earlier frozen subnetworks that ``name`` also reads (bool, ``weight``'s
        shape), or None when it reads only its own."""
        self.subnetwork_id(name)
        return self._buffers.get(READS + name)

    def reading_mask(self, name: str) -> Tensor:
        """Every position ``name`` computes with: its own and those it reads (a new tensor)."""
        own = self.owner == self.subnetwork_id(name)
        reads = self.reads(name)
        return own if reads is None else own | reads

    def readable_positions(self, name: str) -> Tensor:
        """What ``name`` may read beside its own: positions of frozen subnetworks added before it."""
        sid = self.subnetwork_id(name)
        return self.frozen_positions() & (self.owner < sid)

    def frozen_positions(self) -> Tensor:
        """Bool tensor: True where a frozen subnetwork owns the position."""
        ids = [self.subnetwork_id(n) for n in sorted(self.frozen)]
        return torch.isin(self.owner, torch.tensor(ids, dtype=self.owner.dtype, device=self.owner.device))

    def set_reads(self, name: str, positions: Tensor) -> None:
        """Let subnetwork ``name`` read ``positions`` (bool, ``weight``'s shape) of frozen subnetworks
        added before it, read-only: its forward takes their frozen values, it never trains them.
        An all-False ``positions`` removes the read set.

        Raises:
            OwnershipError: a position is not owned by a frozen subnetwork added before ``name``.
            FrozenSubnetworkError: ``name`` is frozen (what it reads can no longer change).
        """
        if name in self.frozen:
            raise FrozenSubnetworkError(f"subnetwork {name!r} is frozen; its read set cannot change")
        self.restore_reads(name, positions)

    def restore_reads(self, name: str, positions: Tensor) -> None:
        """As :meth:`set_reads`, also for a frozen subnetwork: restoring a stored network's read set.

        Raises:
            OwnershipError: a position is not owned by a frozen subnetwork added before ``name``.
        """
        if positions.dtype != torch.bool or tuple(positions.shape) != tuple(self.weight.shape):
            raise OwnershipError(
                f"positions must be a bool tensor of shape {tuple(self.weight.shape)}, "
                f"got {positions.dtype} {tuple(positions.shape)}"
            )
        outside = positions & ~self.readable_positions(name)
        if bool(outside.any()):
            raise OwnershipError(
                f"subnetwork {name!r} cannot read {int(outside.sum())} of the positions: only positions of "
                "frozen subnetworks added before it can be read"
            )
        self._buffers.pop(READS + name, None)
        if bool(positions.any()):
            self.register_buffer(READS + name, positions.detach().clone().to(self.owner.device))
        self._clear_caches()

    def owned_count(self, name: str) -> int:
        """Number of positions subnetwork ``name`` owns."""
        return int(self.mask(name).sum())

    @property
    def free_mask(self) -> Tensor:
        """Boolean tensor: True where no subnetwork owns the position."""
        return self.owner == FREE

    @property
    def free_capacity(self) -> int:
        """Number of positions still free for later subnetworks."""
        return int((self.owner == FREE).sum())

    @property
    def total_positions(self) -> int:
        """Number of kernel positions (``weight.numel()``)."""
        return self.weight.numel()

    def assign(self, name: str, positions: Tensor) -> None:
        """Give the free ``positions`` (boolean, ``weight``'s shape) to subnetwork ``name``.

        Raises :class:`OwnershipError` (and changes nothing) if any position is already owned.
        """
        sid = self.subnetwork_id(name)
        if positions.dtype != torch.bool or tuple(positions.shape) != tuple(self.weight.shape):
            raise OwnershipError(
                f"positions must be a bool tensor of shape {tuple(self.weight.shape)}, "
                f"got {positions.dtype} {tuple(positions.shape)}"
            )
        taken = positions & (self.owner != FREE)
        if bool(taken.any()):
            raise OwnershipError(f"cannot assign {int(taken.sum())} positions to {name!r}: they are already owned")
        with torch.no_grad():
            self.owner[positions] = sid
        self._clear_caches()

    def _clear_caches(self) -> None:
        self._mask_cache.clear()
        self._float_mask_cache.clear()

    def _cached_mask(self, sid: int) -> tuple[Tensor, bool]:
        key = (self.owner.data_ptr(), self.owner._version)
        hit = self._mask_cache.get(sid)
        if hit is None or hit[0] != key:
            m = self.owner == sid
            hit = (key, m, bool(m.all()))
            self._mask_cache[sid] = hit
        return hit[1], hit[2]

    def _float_mask(self, sid: int, mask: Tensor) -> Tensor:
        """``mask`` in the kernel's dtype (a float multiply is cheaper than a bool one, both ways)."""
        hit = self._float_mask_cache.get(sid)
        if hit is None or hit[0] is not mask:
            hit = (mask, mask.to(self.weight.dtype))
            self._float_mask_cache[sid] = hit
        return hit[1]

    def _factory_now(self) -> dict[str, Any]:
        return {"device": self.weight.device, "dtype": self.weight.dtype}

    # ----------------------------------------------------------------- freezing
    def freeze(self, name: str) -> None:
        """Make subnetwork ``name`` read-only, whatever trains the layer afterwards.

        Its positions' current values are copied into ``frozen_kernel`` (a buffer, one dense copy
        per layer, not saved: files hold :meth:`kernel`), and its forward reads them from there;
        its bias stops requiring a gradient. So no optimizer step, gradient or loop over
        ``parameters()`` (AdamW's decoupled weight decay included) can change what ``name``
        computes: ``weight`` may still move at its positions, but nothing reads them. Calling it
        again re-copies the positions from ``weight`` (after loading a state).
        """
        mask = self.mask(name)
        with torch.no_grad():
            if self.frozen_kernel is None or self.frozen_kernel.shape != self.weight.shape:
                self.frozen_kernel = self.weight.detach().clone()
            else:
                self.frozen_kernel[mask] = self.weight.detach()[mask]
        self.frozen.add(name)
        if self.has_bias:
            self.biases[name].requires_grad_(False)

    def kernel(self) -> Tensor:
        """The kernel as the subnetworks read it: frozen subnetworks' positions from ``frozen_kernel``,
        the rest from ``weight``. What model files and per-task inference copy."""
        if not self.frozen or self.frozen_kernel is None:
            return self.weight
        frozen_ids = torch.tensor([self.subnetwork_id(n) for n in sorted(self.frozen)], device=self.owner.device)
        return torch.where(torch.isin(self.owner, frozen_ids), self.frozen_kernel, self.weight)

    def _apply(self, fn: Any, recurse: bool = True) -> Any:  # .to(), .cuda(), .float() move the snapshot too
        out = super()._apply(fn, recurse)
        if self.frozen_kernel is not None:
            self.frozen_kernel = fn(self.frozen_kernel)
        return out

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.frozen and not keep_vars:
            destination[prefix + "weight"] = self.kernel().detach()

    # ----------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        """Apply the layer as the active route's subnetwork sees it (only its positions, its bias).

        The subnetwork comes from :func:`rsn2.layers.routing.subnetwork_for` (set by ``with
        net.task(name)``). A frozen subnetwork reads its positions from ``frozen_kernel`` (see
        :meth:`freeze`); a candidate (during gradient selection) reads every free position. Every
        mode runs this masked path (fast per-task inference copies a task's weights out:
        :class:`rsn2.inference.TaskModel`).
        """
        weight, bias = self.routed_kernel()
        return self._apply_kernel(x, weight, bias)

    def routed_kernel(self) -> tuple[Tensor, Tensor | None]:
        """``(kernel, bias)`` as the active route's subnetwork reads them (see :meth:`kernel_for`); under
        a superposition route, the coefficient-weighted sum of its subnetworks' kernels and biases."""
        parts = mixture_for(self)
        if parts is not None:
            kernels = [(self.kernel_for(name), c) for name, c in parts]
            weight = cast(Tensor, sum(c * k for (k, _), c in kernels))
            biases = [c * b for (_, b), c in kernels if b is not None]
            return weight, cast(Tensor, sum(biases)) if biases else None
        name, reads_free = subnetwork_for(self)
        return self.kernel_for(name, reads_free, reads_free and reads_frozen(self))

    def kernel_for(
        self, subnetwork: str, reads_free: bool = False, reads_frozen: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """``(kernel, bias)`` as ``subnetwork`` reads them: its positions and its read set (frozen
        values), exactly zero elsewhere; its bias or None.

        ``reads_free`` (a candidate during selection): every free position instead, and with
        ``reads_frozen`` every frozen subnetwork's position too, at its frozen value but with the
        gradient flowing to ``weight`` there (what forward-transfer selection scores)."""
        if reads_free:  # the subnetwork may not be registered yet (a shape check before selection)
            bias = self.biases[subnetwork] if self.has_bias and subnetwork in self.biases else None
            kernel = self.weight * self.free_mask
            if reads_frozen and self.frozen:
                frozen = self._frozen_source().detach() + (self.weight - self.weight.detach())
                kernel = torch.where(self.frozen_positions(), frozen, kernel)
            return kernel, bias
        sid = self.subnetwork_id(subnetwork)
        bias = self.biases[subnetwork] if self.has_bias else None
        source = self.frozen_kernel if subnetwork in self.frozen and self.frozen_kernel is not None else self.weight
        reads = self._buffers.get(READS + subnetwork)
        if torch.compiler.is_compiling():  # no host sync and no cache in a traced graph: one select
            weight = torch.where(self.owner == sid, source, torch.zeros((), dtype=source.dtype))
        else:
            mask, owns_all = self._cached_mask(sid)
            weight = source if owns_all else select_owned(source, mask, self._float_mask(sid, mask))
        if reads is not None:
            weight = torch.where(reads, self._frozen_source(), weight)
        return weight, bias

    def _frozen_source(self) -> Tensor:
        """Where frozen positions' values live: ``frozen_kernel`` (``weight`` before any freeze)."""
        return self.frozen_kernel if self.frozen_kernel is not None else self.weight.detach()

    @abstractmethod
    def _apply_kernel(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """The layer's operation with an explicit (already masked) kernel."""

    # ----------------------------------------------------------------- views and state
    def task_axis_view(self) -> tuple[Tensor, Tensor | None]:
        """The paper's representation, for inspection.

        Returns ``(kernel, bias)`` with kernel of shape ``(t, *weight.shape)`` (zero where the
        subnetwork does not own the position) and bias of shape ``(t, bias_features)`` or None.
        """
        with torch.no_grad():
            kernel = task_axis(self.weight, self.owner, len(self.subnetworks))
            bias = (
                torch.stack([self.biases[n] for n in self.subnetworks]) if self.has_bias and self.subnetworks else None
            )
        return kernel, bias

    def ownership(self) -> dict[str, int]:
        """Positions owned per subnetwork name, plus ``"free"``."""
        counts = torch.bincount(self.owner.flatten().long(), minlength=FREE + 1)
        out = {name: int(counts[i]) for i, name in enumerate(self.subnetworks)}
        out["free"] = int(counts[FREE])
        return out

    def get_extra_state(self) -> Tensor:
        reading = [n for n in self.subnetworks if READS + n in self._buffers]
        return encode_state({"subnetworks": list(self.subnetworks), **({"reads": reading} if reading else {})})

    def set_extra_state(self, state: Tensor | dict[str, Any]) -> None:
        add_stored_subnetworks(state, self.subnetworks, self.add_subnetwork)
        for name in decode_state(state).get("reads", []):  # allocated here, so the loader copies into them
            if name not in self.subnetworks:
                raise OwnershipError(f"state has a read set for unknown subnetwork {name!r}")
            if READS + name not in self._buffers:
                self.register_buffer(READS + name, torch.zeros_like(self.owner, dtype=torch.bool))
        self._clear_caches()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        extra = state_dict.get(prefix + "_extra_state")
        if extra is not None:  # biases must exist before the parameters are copied in
            self.set_extra_state(extra)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        check_owner(self.owner, tuple(self.weight.shape), len(self.subnetworks), prefix or "layer")
        self._clear_caches()

    def _ownership_repr(self) -> str:
        total = self.total_positions
        parts = [f"{n}={c / total:.1%}" for n, c in self.ownership().items()]
        return "owners(" + ", ".join(parts) + ")"


def select_owned(weight: Tensor, mask: Tensor, float_mask: Tensor) -> Tensor:
    """``weight`` where ``mask`` holds, exactly 0 elsewhere, whatever the other positions hold.

    On the CPU a multiply by the float mask is the fast way, but ``NaN * 0`` and ``inf * 0`` are
    NaN: a non-finite weight of another subnetwork (or a free position) would leak into this one.
    So when the product is not finite everywhere, the positions are selected instead
    (``torch.where``, several times slower there, taken only then); a non-finite weight the
    subnetwork owns stays as it is. The check is one sum (at least float32): any NaN or infinity
    makes it non-finite, and a sum of finite values that overflows takes the exact path too,
    needlessly but correctly. (The element-wise ``isfinite(product).all()`` took four passes,
    about an eighth of a later-stage FC-A training step in ``python -m benchmarks --sections
    training``.)

    On other devices the check would read the sum back to the host, a wait for the device on
    every masked layer of every step, so ``torch.where`` runs there directly (one pass that reads
    a byte of mask per position, against the float mask's four; not yet timed on a GPU).
    """
    if weight.device.type != "cpu":
        return torch.where(mask, weight, torch.zeros((), dtype=weight.dtype, device=weight.device))
    product = weight * float_mask
    if bool(torch.isfinite(product.sum(dtype=torch.promote_types(product.dtype, torch.float32)))):
        return product
    return torch.where(mask, weight, torch.zeros((), dtype=weight.dtype, device=weight.device))


def source_factory(weight: Tensor) -> dict[str, Any]:
    """``device`` and ``dtype`` for the multitask form of a module holding ``weight``: the module's own,
    the CPU for a module on the meta device."""
    return {"device": None if weight.is_meta else weight.device, "dtype": weight.dtype}


def copy_values(target: Tensor, source: Tensor) -> None:
    """``target[:] = source``, unless ``source`` is on the meta device (it holds no values)."""
    if not source.is_meta:
        with torch.no_grad():
            target.copy_(source)
