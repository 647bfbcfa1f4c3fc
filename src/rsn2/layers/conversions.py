"""What each PyTorch module becomes in a multitask network: one table, used for a user's model
(:func:`rsn2.multitask`) and for rsn2's own layer lists alike (:func:`rsn2.network.build.build_layer`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from rsn2.layers.attention import MultitaskMultiheadAttention
from rsn2.layers.conv import MultitaskConv1d, MultitaskConv2d
from rsn2.layers.embedding import MultitaskEmbedding
from rsn2.layers.linear import MultitaskLinear
from rsn2.layers.per_subnetwork import PerSubnetwork

CONVERSIONS: dict[type[nn.Module], Callable[[Any], nn.Module]] = {
    nn.Linear: MultitaskLinear.from_module,
    nn.Conv1d: MultitaskConv1d.from_module,
    nn.Conv2d: MultitaskConv2d.from_module,
    nn.Embedding: MultitaskEmbedding.from_module,
    nn.MultiheadAttention: MultitaskMultiheadAttention.from_module,
    nn.BatchNorm1d: PerSubnetwork,
    nn.BatchNorm2d: PerSubnetwork,
    nn.LayerNorm: PerSubnetwork,
    nn.GroupNorm: PerSubnetwork,
}
"""Module type (exact, not subclasses: a subclass may compute something else) -> its multitask form.
Kernels (linear, convolutions, embeddings, attention projections) are split among disjoint
subnetworks; normalization layers get one copy (affine parameters and, for batch norm, running
statistics) per subnetwork."""


def converted(module: nn.Module) -> nn.Module:
    """The multitask form of one module of a :data:`CONVERSIONS` type.

    Raises:
        KeyError: ``module``'s type is not in the table.
    """
    return CONVERSIONS[type(module)](module)
