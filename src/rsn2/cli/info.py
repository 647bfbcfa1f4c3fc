"""``rsn2 info``: what a model file holds, after re-verifying its integrity."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rsn2.io import verify_file
from rsn2.network.model import MultitaskNetwork
from rsn2.network.spec import NetworkSpec
from rsn2.preprocessing import TextInput, preprocessing_of


def model_info(path: str | Path) -> dict[str, Any]:
    """Verified summary of a model file: tasks, per-layer ownership and free capacity, bytes.

    Verified without building the network (:func:`rsn2.io.verify_file`), so a model converted from a
    user's module reads without that module."""
    meta = verify_file(path)
    spec = NetworkSpec.from_dict(meta["spec"])
    body = meta.get("body")
    if body is None:
        network = MultitaskNetwork(spec)  # no weights loaded: the order of its layers, its tasks' subnetworks
        subnetworks = {t: network.subnetworks_of([t]) for t in spec.task_names}
        order = [key for key, _ in network.multitask_layers()]
    else:
        groups = {t: [g.name for g in spec.shared if t in g.tasks] for t in spec.task_names}
        subnetworks, order = {t: [t, *groups[t]] for t in spec.task_names}, sorted(meta["layers"])
    frozen = set(meta.get("frozen", []))
    layers = []
    for key in order:
        lm = meta["layers"][key]
        owned = dict(lm["owned"])
        positions = sum(owned.values())
        layers.append(
            {
                "layer": key,
                "kind": lm.get("kind", _kind_of(lm["shape"])),
                "shape": lm["shape"],
                "positions": positions,
                "owned": {k: v for k, v in owned.items() if k != "free"},
                "free": owned["free"],
                "free_fraction": owned["free"] / positions,
                "reads": {sub: entry["count"] for sub, entry in lm.get("reads", {}).items()},
            }
        )
    out = {
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
                "subnetworks": subnetworks[t.name],
                "frozen": all(s in frozen for s in subnetworks[t.name]),
                "transfer": meta.get("selection", {}).get(t.name, {}).get("transfer", "none"),
                "served": _served(t, meta),
            }
            for t in spec.tasks
        ],
        "shared": [g.to_dict() for g in spec.shared],
        "layers": layers,
        "checksums": meta["checksums"],
    }
    if body is not None:
        out["body"] = {
            "class": body.get("class"),
            "shared_frozen": body.get("shared_frozen", []),
            "dense_per_task": body.get("dense_per_task", []),
            "per_subnetwork": {k: v["module"] for k, v in body.get("per_subnetwork", {}).items()},
        }
    return out


def _kind_of(shape: list[int]) -> str:
    """The layer class a file written before kinds were recorded holds (linear or 2-D convolution)."""
    return "MultitaskConv2d" if len(shape) == 4 else "MultitaskLinear"


def _served(spec: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """What predict, serve and the ONNX export take and answer for a task (its raw ``inputs`` and
    ``outputs``) and the ``preprocessing`` between; a text task's token rule too."""
    pre = preprocessing_of(spec, meta)
    out = pre.describe()
    if isinstance(pre.input, TextInput):
        out["preprocessing"]["token_rule"] = pre.input.token_rule()
    return out


def format_info(info: dict[str, Any]) -> str:
    lines = [
        f"{info['path']}: {info['bytes']:,} bytes, format v{info['format_version']}, integrity verified",
        "",
        "tasks:",
    ]
    name_width = max([12, *(len(t["name"]) for t in info["tasks"])])
    for t in info["tasks"]:
        lines.append(
            f"  {t['name']:<{name_width}} {t['kind']:<14} keep {t['keep_fraction']:<6g} "
            f"subnetworks {', '.join(t['subnetworks'])}{' (frozen)' if t['frozen'] else ''}"
            + (f"; transfer {t['transfer']}" if t.get("transfer", "none") != "none" else "")
        )
        served = t["served"]
        takes = " or ".join(f"{i['name']} {i['datatype']} {i['shape']}" for i in served["inputs"])
        answers = ", ".join(f"{o['name']} {o['datatype']} {o['shape']}" for o in served["outputs"])
        lines.append(f"  {'':<{name_width}} takes {takes} ({served['preprocessing']['input']}); answers {answers}")
    for g in info["shared"]:
        where = "layers" if g["layers"] and isinstance(g["layers"][0], str) else "trunk layers"
        lines.append(f"  shared {g['name']}: tasks {g['tasks']} in {where} {g['layers']}")
    body = info.get("body")
    if body is not None:
        lines += ["", f"body: converted from {body['class']} (load it with that module: --factory)"]
        per = ", ".join(f"{k} ({v})" for k, v in body["per_subnetwork"].items())
        lines.append(f"  one copy per subnetwork: {per or 'none'}")
        if body["shared_frozen"] or body["dense_per_task"]:
            lines.append(
                f"  shared frozen: {body['shared_frozen'] or 'none'}; "
                f"dense per task: {body['dense_per_task'] or 'none'}"
            )
    lines += ["", "layers:"]
    widths = [
        max([20, *(len(layer["layer"]) for layer in info["layers"])]),
        max([16, *(len(layer["kind"]) for layer in info["layers"])]),
        max([18, *(len(str(tuple(layer["shape"]))) for layer in info["layers"])]),
    ]
    for layer in info["layers"]:
        owned = ", ".join(f"{k} {v / layer['positions']:.1%}" for k, v in layer["owned"].items()) or "nobody"
        reads = ", ".join(f"{k} {v / layer['positions']:.1%}" for k, v in layer.get("reads", {}).items())
        lines.append(
            f"  {layer['layer']:<{widths[0]}} {layer['kind']:<{widths[1]}} {tuple(layer['shape'])!s:<{widths[2]}} "
            f"{owned}; free {layer['free']:,} ({layer['free_fraction']:.1%})" + (f"; reads {reads}" if reads else "")
        )
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the command's parser to ``sub``."""
    info = sub.add_parser(
        "info",
        help="show a model file's tasks, per-layer ownership and free capacity; verifies integrity",
        description="Load MODEL, re-verify shapes, ownership and checksums, and describe it. Exits with status 1 "
        "and the reason if the file fails verification.",
    )
    info.add_argument("model", metavar="MODEL", help="path of an rsn2 .safetensors model file")
    info.add_argument("--json", action="store_true", help="print one JSON object")

    info.set_defaults(handler=run)


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    described = model_info(args.model)
    print(json.dumps(described, indent=2) if args.json else format_info(described))
    return 0
