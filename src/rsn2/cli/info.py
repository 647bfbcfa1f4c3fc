"""``rsn2 info``: what a model file holds, after re-verifying its integrity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rsn2.io import load_model, read_metadata
from rsn2.network.model import MultitaskNetwork


def model_info(path: str | Path) -> dict[str, Any]:
    """Verified summary of a model file: tasks, per-layer ownership and free capacity, bytes."""
    network: MultitaskNetwork = load_model(path)
    meta = read_metadata(path)
    layers = []
    for key, layer in network.multitask_layers():
        owned = layer.ownership()
        layers.append(
            {
                "layer": key,
                "kind": type(layer).__name__,
                "shape": list(layer.weight.shape),
                "positions": layer.total_positions,
                "owned": {k: v for k, v in owned.items() if k != "free"},
                "free": owned["free"],
                "free_fraction": owned["free"] / layer.total_positions,
            }
        )
    return {
        "path": str(path),
        "bytes": Path(path).stat().st_size,
        "format_version": meta["format_version"],
        "rsn2_version": meta.get("rsn2_version"),
        "verified": True,
        "tasks": [
            {
                "name": t.name,
                "kind": t.kind,
                "keep_fraction": t.keep_fraction,
                "input_shape": list(t.input_shape),
                "input_dtype": t.input_dtype,
                "outputs": t.outputs,
                "classes": list(t.classes) if t.classes is not None else None,
                "subnetworks": network.subnetworks_of([t.name]),
                "frozen": all(s in network.frozen for s in network.subnetworks_of([t.name])),
            }
            for t in network.spec.tasks
        ],
        "shared": [g.to_dict() for g in network.spec.shared],
        "layers": layers,
        "checksums": meta["checksums"],
    }


def format_info(info: dict[str, Any]) -> str:
    lines = [
        f"{info['path']}: {info['bytes']:,} bytes, format v{info['format_version']}, integrity verified",
        "",
        "tasks:",
    ]
    for t in info["tasks"]:
        lines.append(
            f"  {t['name']:<12} {t['kind']:<14} keep {t['keep_fraction']:<6g} "
            f"subnetworks {', '.join(t['subnetworks'])}{' (frozen)' if t['frozen'] else ''}"
        )
    for g in info["shared"]:
        lines.append(f"  shared {g['name']}: tasks {g['tasks']} in trunk layers {g['layers']}")
    lines += ["", "layers:"]
    for layer in info["layers"]:
        owned = ", ".join(f"{k} {v / layer['positions']:.1%}" for k, v in layer["owned"].items()) or "nobody"
        lines.append(
            f"  {layer['layer']:<20} {layer['kind']:<16} {tuple(layer['shape'])!s:<18} "
            f"{owned}; free {layer['free']:,} ({layer['free_fraction']:.1%})"
        )
    return "\n".join(lines)
