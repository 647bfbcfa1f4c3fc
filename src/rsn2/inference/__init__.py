"""Per-task inference: a task's own weights copied out of a multitask network, packed for the sparse
CPU kernels where they win (:class:`TaskModel`)."""

from rsn2.inference.vector_width import request_full_width_vectors

request_full_width_vectors()  # before anything here imports Numba, which fixes its target then

from rsn2.inference.fused_run import FusedRun  # noqa: E402
from rsn2.inference.packed import DeltaCSR  # noqa: E402
from rsn2.inference.policy import SparsePolicy, get_policy, set_policy, sparse_policy  # noqa: E402
from rsn2.inference.subnetwork_kernel import ConvGeometry, SubnetworkKernel  # noqa: E402
from rsn2.inference.task_model import TaskModel, task_models  # noqa: E402

__all__ = [
    "DeltaCSR",
    "ConvGeometry",
    "FusedRun",
    "SparsePolicy",
    "SubnetworkKernel",
    "TaskModel",
    "get_policy",
    "set_policy",
    "sparse_policy",
    "task_models",
]
