"""rsn2: many unrelated tasks in one network, each in its own disjoint subnetwork (RSN2 pruning).

The public API::

    from rsn2 import MultitaskNetwork, NetworkSpec, TaskSpec, TaskData, TrainConfig, fit_stage, TaskModel
"""

import os

# PyTorch's OpenMP threads spin while they wait for work, which slows every process on a busy machine
# (docs/performance.md, "Threads"). Set before torch loads its OpenMP runtime; a value already set
# (OMP_WAIT_POLICY=ACTIVE spins again) is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from rsn2.errors import (
    CapacityError,
    FrozenSubnetworkError,
    ModelFileError,
    OwnershipError,
    RSN2Error,
    SpecError,
    TaskError,
)
from rsn2.inference import TaskModel
from rsn2.io import load_model, save_model
from rsn2.layers import MultitaskConv2d, MultitaskLinear
from rsn2.network import MultitaskNetwork, NetworkSpec, SharedSubnetwork, TaskSpec, multitask
from rsn2.network.dense_control import dense_control
from rsn2.selection import PAPER_SELECTION, SelectionConfig, ownership_problems, select_subnetworks, subnetwork_signal
from rsn2.training import TaskData, TrainConfig, evaluate, fit_stage, train_stage
from rsn2.version import __version__

__all__ = [
    "CapacityError",
    "FrozenSubnetworkError",
    "ModelFileError",
    "MultitaskConv2d",
    "MultitaskLinear",
    "MultitaskNetwork",
    "NetworkSpec",
    "OwnershipError",
    "PAPER_SELECTION",
    "RSN2Error",
    "SelectionConfig",
    "SharedSubnetwork",
    "SpecError",
    "TaskData",
    "TaskError",
    "TaskModel",
    "TaskSpec",
    "TrainConfig",
    "__version__",
    "dense_control",
    "evaluate",
    "fit_stage",
    "load_model",
    "multitask",
    "ownership_problems",
    "save_model",
    "select_subnetworks",
    "subnetwork_signal",
    "train_stage",
]
