"""What a continual network costs: WSN's capacity measure, the model file, and each task's weights.

WSN (Kang et al., ICML 2022) reports *capacity*: the bits of the weights any task uses plus the bits
of the masks that say which task uses which, over the bits of one dense model. For rsn2 the masks are
the packed owner maps and the read sets (forward transfer) as the model file stores them
(:mod:`rsn2.io.owner_codec`, :mod:`rsn2.io.read_codec`), and the weights are float32. Counted over
the shared layers (``trunk.*`` or a converted ``body.*``); every method's heads are its own.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from rsn2.io import save_model
from rsn2.io.owner_codec import pack_owner
from rsn2.io.read_codec import pack_reads
from rsn2.layers import FREE, MultitaskKernelLayer
from rsn2.network.model import MultitaskNetwork

SHARED_LAYERS = ("trunk.", "body.")
"""Key prefixes of the layers every task's path shares (adapters and heads are a task's own)."""


def storage_report(network: MultitaskNetwork) -> dict[str, Any]:
    """``positions`` and ``used`` (owned by any subnetwork) of the shared layers, the bits of their
    owner maps and read sets, ``capacity`` ((32 x used + mask bits) / (32 x positions)), and
    ``model_file_bytes`` (the whole network saved with :func:`rsn2.io.save_model`)."""
    positions = used = owner_bits = read_bits = 0
    for key, layer in network.multitask_layers():
        if not key.startswith(SHARED_LAYERS):
            continue
        owner = layer.owner.detach().cpu().numpy()
        positions += layer.total_positions
        used += int((layer.owner != FREE).sum())
        owner_bits += 8 * len(pack_owner(owner).data)
        for sid, name in enumerate(layer.subnetworks):
            reads = layer.reads(name)
            if reads is not None:
                read_bits += 8 * len(pack_reads(reads.cpu().numpy(), owner, sid))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_model(network, path)
        file_bytes = os.path.getsize(path)
    return {
        "positions": positions,
        "used": used,
        "owner_map_bits": owner_bits,
        "read_set_bits": read_bits,
        "capacity": (32 * used + owner_bits + read_bits) / (32 * positions) if positions else 0.0,
        "model_file_bytes": file_bytes,
    }


def task_weights(network: MultitaskNetwork, task: str) -> int:
    """Kernel positions ``task`` computes with (its own and those it reads): what its per-task
    inference (:class:`~rsn2.inference.TaskModel`) holds and multiplies, so its cost."""
    total = 0
    for step in network.path(task):
        layer = step.module
        if isinstance(layer, MultitaskKernelLayer) and step.subnetwork in layer.subnetworks:
            total += int(layer.reading_mask(step.subnetwork).sum())
    return total
