"""Multitask layers: one kernel, a uint8 owner map, one bias per subnetwork; per-subnetwork copies.

Every layer's ``forward`` takes only its input; the subnetwork it reads is the active route's
(:mod:`rsn2.layers.routing`).
"""

from rsn2.layers.attention import MultitaskMultiheadAttention
from rsn2.layers.base import MultitaskKernelLayer, select_owned
from rsn2.layers.conv import MultitaskConv1d, MultitaskConv2d
from rsn2.layers.embedding import MultitaskEmbedding
from rsn2.layers.linear import MultitaskLinear
from rsn2.layers.ownership import FREE, MAX_SUBNETWORKS
from rsn2.layers.per_subnetwork import PerSubnetwork
from rsn2.layers.routing import Route, active_route, reading, routed

__all__ = [
    "FREE",
    "MAX_SUBNETWORKS",
    "MultitaskConv1d",
    "MultitaskConv2d",
    "MultitaskEmbedding",
    "MultitaskKernelLayer",
    "MultitaskLinear",
    "MultitaskMultiheadAttention",
    "PerSubnetwork",
    "Route",
    "active_route",
    "reading",
    "routed",
    "select_owned",
]
