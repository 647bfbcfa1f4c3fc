"""Composing multitask networks: specs (plain data) and the network module."""

from rsn2.network.convert import CONVERSIONS, multitask
from rsn2.network.model import MultitaskNetwork, PathStep
from rsn2.network.spec import (
    LayerSpec,
    NetworkSpec,
    SharedSubnetwork,
    TaskSpec,
    conv2d,
    embedding,
    flatten,
    linear,
    maxpool2d,
    relu,
)
from rsn2.network.task_inference import TaskGuess

__all__ = [
    "CONVERSIONS",
    "LayerSpec",
    "MultitaskNetwork",
    "NetworkSpec",
    "PathStep",
    "SharedSubnetwork",
    "TaskGuess",
    "TaskSpec",
    "conv2d",
    "embedding",
    "flatten",
    "linear",
    "maxpool2d",
    "multitask",
    "relu",
]
