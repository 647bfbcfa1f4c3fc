"""RSN2 selection: which free positions each new subnetwork keeps."""

from rsn2.layers.ownership import requested_positions
from rsn2.selection.audit import owner_maps, ownership_problems
from rsn2.selection.config import (
    ALLOCATIONS,
    PAPER_SELECTION,
    RESCALE_MODES,
    SelectionConfig,
    rescale_mode_of,
)
from rsn2.selection.importance import (
    METHODS,
    GradientImportance,
    Importance,
    MagnitudeImportance,
    RandomImportance,
    importance_by_name,
)
from rsn2.selection.rescaling import fan_in_scale
from rsn2.selection.select import SelectionReport, select_subnetworks
from rsn2.selection.signal import LayerSignal, SignalReport, subnetwork_signal
from rsn2.selection.topk import compute_input_balanced_mask, compute_mask, compute_row_balanced_mask

__all__ = [
    "ALLOCATIONS",
    "RESCALE_MODES",
    "METHODS",
    "GradientImportance",
    "Importance",
    "LayerSignal",
    "MagnitudeImportance",
    "PAPER_SELECTION",
    "RandomImportance",
    "SelectionConfig",
    "SelectionReport",
    "SignalReport",
    "compute_mask",
    "compute_input_balanced_mask",
    "compute_row_balanced_mask",
    "fan_in_scale",
    "importance_by_name",
    "owner_maps",
    "ownership_problems",
    "requested_positions",
    "rescale_mode_of",
    "select_subnetworks",
    "subnetwork_signal",
]
