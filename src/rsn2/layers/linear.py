"""Multitask fully connected layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rsn2.errors import SpecError
from rsn2.layers.base import MultitaskKernelLayer, copy_values, source_factory


class MultitaskLinear(MultitaskKernelLayer):
    r"""A linear layer whose kernel is split among disjoint subnetworks.

    Subnetwork ``s`` computes :math:`y = x (W \odot M_s)^T + b_s` where :math:`M_s` is the set of
    positions ``s`` owns. Layout follows :class:`torch.nn.Linear`.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: whether every subnetwork gets its own additive bias.

    Shape:
        - Input: :math:`(*, H_{in})` with :math:`H_{in} = \text{in\_features}`.
        - Output: :math:`(*, H_{out})` with :math:`H_{out} = \text{out\_features}`.

    Attributes:
        weight: ``(out_features, in_features)``.
        owner: ``uint8`` ``(out_features, in_features)``.
        biases: name -> ``(out_features,)``.

    Examples::

        >>> layer = MultitaskLinear(4, 3)
        >>> _ = layer.add_subnetwork("a")
        >>> layer.assign("a", torch.ones(3, 4, dtype=torch.bool))
        >>> layer(torch.randn(2, 4), "a").shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if in_features < 1 or out_features < 1:
            raise SpecError(f"in_features and out_features must be >= 1, got {in_features}, {out_features}")
        self.in_features = in_features
        self.out_features = out_features
        super().__init__((out_features, in_features), out_features, bias=bias, device=device, dtype=dtype)

    @classmethod
    def from_module(cls, linear: torch.nn.Linear) -> MultitaskLinear:
        """The multitask form of ``linear``: its weight copied in, one bias per subnetwork (from zero).
        A module on the meta device (no values: how rsn2 builds its own networks) gives a layer on the
        CPU with Glorot-uniform weights."""
        w = linear.weight
        out = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, **source_factory(w))
        copy_values(out.weight, w)
        return out

    def _apply_kernel(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.has_bias}, {self._ownership_repr()}"
        )
