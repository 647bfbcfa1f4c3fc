"""RSN2 selection: which free positions each new subnetwork keeps."""

from rsn2.selection.importance import (
    METHODS,
    GradientImportance,
    Importance,
    MagnitudeImportance,
    RandomImportance,
    importance_by_name,
)
from rsn2.selection.rsn2 import SelectionReport, select_subnetworks
from rsn2.selection.signal import LayerSignal, SignalReport, subnetwork_signal
from rsn2.selection.topk import compute_mask, requested_positions

__all__ = [
    "METHODS",
    "GradientImportance",
    "Importance",
    "LayerSignal",
    "MagnitudeImportance",
    "RandomImportance",
    "SelectionReport",
    "SignalReport",
    "compute_mask",
    "importance_by_name",
    "requested_positions",
    "select_subnetworks",
    "subnetwork_signal",
]
