"""Per-task inference: a task's own weights copied out of a multitask network, packed for the sparse
CPU kernels where they win (:class:`TaskModel`)."""

from rsn2.inference.fused_run import FusedRun
from rsn2.inference.packed import DeltaCSR
from rsn2.inference.policy import SparsePolicy
from rsn2.inference.subnetwork_kernel import ConvGeometry, SubnetworkKernel
from rsn2.inference.task_model import TaskModel, task_models

__all__ = [
    "DeltaCSR",
    "ConvGeometry",
    "FusedRun",
    "SparsePolicy",
    "SubnetworkKernel",
    "TaskModel",
    "task_models",
]
