"""Fast per-task inference: packed sparse kernels chosen automatically in eval mode."""

from rsn2.inference.packed import ChunkedCSR
from rsn2.inference.plan import ConvGeometry, LayerPlan
from rsn2.inference.policy import SparsePolicy, get_policy, set_policy, sparse_policy

__all__ = ["ChunkedCSR", "ConvGeometry", "LayerPlan", "SparsePolicy", "get_policy", "set_policy", "sparse_policy"]
