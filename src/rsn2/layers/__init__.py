"""Multitask layers: one kernel, a uint8 owner map, one bias per subnetwork."""

from rsn2.layers.base import MultitaskKernelLayer, select_owned
from rsn2.layers.conv import MultitaskConv2d
from rsn2.layers.linear import MultitaskLinear
from rsn2.layers.ownership import FREE, MAX_SUBNETWORKS

__all__ = ["FREE", "MAX_SUBNETWORKS", "MultitaskConv2d", "MultitaskKernelLayer", "MultitaskLinear", "select_owned"]
