"""rsn2: many unrelated tasks in one network, each in its own disjoint subnetwork (RSN2 pruning).

The public API::

    from rsn2 import MultitaskNetwork, NetworkSpec, TaskSpec, TaskData, TrainConfig, fit_stage, TaskModel

Importing ``rsn2`` changes nothing in the process and imports neither PyTorch nor Numba: each name
below loads its module on first use. The settings rsn2's own entry points make (idle threads that
sleep, full-width vectors) are :func:`configure_process`, for a program to call before it imports
torch if it wants them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rsn2.version import __version__

_EXPORTS = {
    "CapacityError": "rsn2.errors",
    "FrozenSubnetworkError": "rsn2.errors",
    "ModelFileError": "rsn2.errors",
    "OwnershipError": "rsn2.errors",
    "RSN2Error": "rsn2.errors",
    "SpecError": "rsn2.errors",
    "TaskError": "rsn2.errors",
    "TaskModel": "rsn2.inference",
    "load_model": "rsn2.io",
    "save_model": "rsn2.io",
    "MultitaskConv2d": "rsn2.layers",
    "MultitaskLinear": "rsn2.layers",
    "MultitaskNetwork": "rsn2.network",
    "NetworkSpec": "rsn2.network",
    "SharedSubnetwork": "rsn2.network",
    "TaskSpec": "rsn2.network",
    "multitask": "rsn2.network",
    "dense_control": "rsn2.network.dense_control",
    "PAPER_SELECTION": "rsn2.selection",
    "SelectionConfig": "rsn2.selection",
    "ownership_problems": "rsn2.selection",
    "select_subnetworks": "rsn2.selection",
    "subnetwork_signal": "rsn2.selection",
    "TaskData": "rsn2.training",
    "TrainConfig": "rsn2.training",
    "evaluate": "rsn2.training",
    "fit_stage": "rsn2.training",
    "train_stage": "rsn2.training",
    "configure_process": "rsn2.process",
}
"""Public name -> the module that defines it (imported on first use)."""

if TYPE_CHECKING:  # what type checkers and IDEs read; at run time __getattr__ loads them
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
    from rsn2.process import configure_process
    from rsn2.selection import (
        PAPER_SELECTION,
        SelectionConfig,
        ownership_problems,
        select_subnetworks,
        subnetwork_signal,
    )
    from rsn2.training import TaskData, TrainConfig, evaluate, fit_stage, train_stage


def __getattr__(name: str) -> Any:
    """``rsn2.<name>`` for a public name: its module imported now (and the name kept here)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rsn2' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


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
    "configure_process",
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
