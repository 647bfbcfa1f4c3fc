"""A module held once per subnetwork: normalization layers and parts a user keeps dense per task."""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor, nn

from rsn2.errors import TaskError
from rsn2.layers.ownership import add_stored_subnetworks, check_new_subnetwork, encode_state
from rsn2.layers.routing import mixture_for, subnetwork_for


class PerSubnetwork(nn.Module):
    """One full copy of ``template`` per subnetwork; a forward pass runs the active route's copy.

    What a :class:`torch.nn.BatchNorm2d`, :class:`~torch.nn.LayerNorm` or
    :class:`~torch.nn.GroupNorm` becomes in a multitask network: every subnetwork has its own affine
    parameters and, for batch norm, its own running statistics, so training (or merely running) one
    task in train mode never moves another task's. Also what a user's module marked dense per task
    becomes. Each copy starts as ``template`` was at conversion.

    Invariants: ``copies`` holds one module per name in :attr:`subnetworks`, in order; a frozen
    subnetwork's copy holds its values as buffers (no optimizer made later can hold them; one made
    earlier holds parameters nothing reads any more) and always runs in eval mode, so its batch
    statistics neither move nor are used.

    Shape: as ``template``.
    """

    def __init__(self, template: nn.Module) -> None:
        super().__init__()
        if isinstance(template, PerSubnetwork):
            raise TaskError("PerSubnetwork cannot hold another PerSubnetwork")
        self._template = [template]  # a list keeps it out of the module tree: never trained nor saved
        self.copies = nn.ModuleDict()
        self.subnetworks: list[str] = []
        self.frozen: set[str] = set()

    @property
    def template(self) -> nn.Module:
        """The module as it was at conversion (what a new subnetwork's copy starts from)."""
        return self._template[0]

    def __getattr__(self, name: str) -> Any:
        """Plain settings of the template (``eps``, ``num_features``) read through; tensors do not."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            value = getattr(self._modules_template(), name)
            if isinstance(value, (Tensor, nn.Module)) or callable(value):
                raise
            return value

    def _modules_template(self) -> nn.Module:
        try:
            return self.__dict__["_template"][0]
        except KeyError:
            raise AttributeError("_template") from None

    # ----------------------------------------------------------------- subnetworks
    def add_subnetwork(self, name: str) -> int:
        """Register ``name`` with a fresh copy of the template; returns its index."""
        check_new_subnetwork(name, self.subnetworks)
        fresh = copy.deepcopy(self.template)
        fresh.requires_grad_(True)
        fresh.train(self.training)
        self.copies[name] = fresh
        self.subnetworks.append(name)
        return len(self.subnetworks) - 1

    def remove_last_subnetwork(self, name: str) -> None:
        """Undo :meth:`add_subnetwork` for the most recently added subnetwork."""
        if not self.subnetworks or self.subnetworks[-1] != name:
            raise TaskError(f"only the most recently added subnetwork can be removed, not {name!r}")
        self.subnetworks.pop()
        del self.copies[name]
        self.frozen.discard(name)

    def subnetwork_parameters(self, name: str) -> list[nn.Parameter]:
        """The trainable parameters of ``name``'s copy (none once it is frozen)."""
        return list(self.copies[name].parameters())

    def freeze(self, name: str) -> None:
        """Make ``name``'s copy read-only: its parameters become buffers of the same names and values,
        and it stays in eval mode. Calling it again changes nothing."""
        if name not in self.copies:
            raise TaskError(f"layer has no subnetwork {name!r}; it has {self.subnetworks or 'none'}")
        for module in self.copies[name].modules():
            for pname, param in list(module._parameters.items()):
                if param is None:
                    continue
                del module._parameters[pname]
                module.register_buffer(pname, param.detach().clone())
        self.copies[name].eval()
        self.frozen.add(name)

    def train(self, mode: bool = True) -> PerSubnetwork:
        super().train(mode)
        for name in self.frozen:
            self.copies[name].eval()
        return self

    def _apply(self, fn: Any, recurse: bool = True) -> Any:  # .to(), .cuda(): new copies follow
        out = super()._apply(fn, recurse)
        self.template._apply(fn, recurse)
        return out

    # ----------------------------------------------------------------- forward
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the active route's copy (the template for a candidate not registered yet); under a
        superposition route, the coefficient-weighted sum of its copies' outputs."""
        parts = mixture_for(self)
        if parts is not None:
            return sum(c * self.copies[name](*args, **kwargs) for name, c in parts)
        name, reads_free = subnetwork_for(self)
        if name in self.copies:
            return self.copies[name](*args, **kwargs)
        if reads_free:  # a shape check before selection: the template, in eval mode (its statistics never move)
            return self.template.eval()(*args, **kwargs)
        raise TaskError(f"layer has no subnetwork {name!r}; it has {self.subnetworks or 'none'}")

    # ----------------------------------------------------------------- state
    def get_extra_state(self) -> Tensor:
        return encode_state({"subnetworks": list(self.subnetworks)})

    def set_extra_state(self, state: Tensor | dict[str, Any]) -> None:
        add_stored_subnetworks(state, self.subnetworks, self.add_subnetwork)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        extra = state_dict.get(prefix + "_extra_state")
        if extra is not None:  # copies must exist before their tensors are loaded
            self.set_extra_state(extra)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        frozen = f", frozen={sorted(self.frozen)}" if self.frozen else ""
        return f"template={type(self.template).__name__}, subnetworks={self.subnetworks}{frozen}"
