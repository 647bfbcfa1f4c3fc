"""RSN2 selection: which free positions each new subnetwork keeps."""

from rsn2.selection.importance import (
    METHODS,
    GradientImportance,
    Importance,
    MagnitudeImportance,
    RandomImportance,
    importance_by_name,
)
from rsn2.selection.select import ALLOCATIONS, RESCALE_MODES, SelectionReport, rescale_mode_of, select_subnetworks
from rsn2.selection.signal import LayerSignal, SignalReport, subnetwork_signal
from rsn2.selection.topk import compute_mask, compute_row_balanced_mask, requested_positions

__all__ = [
    "ALLOCATIONS",
    "RESCALE_MODES",
    "METHODS",
    "GradientImportance",
    "Importance",
    "LayerSignal",
    "MagnitudeImportance",
    "RandomImportance",
    "SelectionReport",
    "SignalReport",
    "compute_mask",
    "compute_row_balanced_mask",
    "importance_by_name",
    "requested_positions",
    "rescale_mode_of",
    "select_subnetworks",
    "subnetwork_signal",
]
