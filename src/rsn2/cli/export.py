"""``rsn2 export``: one task as a standalone ONNX model, checked against rsn2."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rsn2.cli.options import body, factory_option, values_option


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the command's parser to ``sub``."""
    export = sub.add_parser(
        "export",
        help="write one task of a model as a standalone ONNX model (its preprocessing and weights only), checked "
        "against rsn2",
        description="Export task T of MODEL to FILE as an ONNX model that takes raw input and answers as rsn2 "
        "predict does: input 'features' (raw feature values, scaled in the graph), 'pixels' (0-255 at the "
        "training size), 'token_ids' (the token rule is in the file's metadata) or 'input' (tasks without a stored "
        "preprocessing); outputs 'probabilities' and 'label', or 'value' in the training target's units; dynamic "
        "batch axis. Only the task's own weights are stored (as their nonzeros). Before reporting success the "
        "command runs the file in ONNX Runtime and compares its answers with rsn2's on seeded batches (within "
        "1e-5); on any difference nothing is written.",
    )
    export.add_argument("model", metavar="MODEL", help="path of an rsn2 .safetensors model file")
    export.add_argument("--task", required=True, metavar="T", help="the task to export")
    factory_option(export)
    export.add_argument("--format", default="onnx", choices=["onnx"], help="output format (default onnx)")
    values_option(export, "store the task's weights")
    export.add_argument("--out", required=True, metavar="FILE", help="where to write the exported model")

    export.set_defaults(handler=run)


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    from rsn2.deploy import export_onnx
    from rsn2.io import load_model, read_metadata
    from rsn2.preprocessing import preprocessing_of

    network = load_model(args.model, body=body(args))
    pre = preprocessing_of(network.task_spec(args.task), read_metadata(args.model))
    exported = export_onnx(network, args.task, args.out, preprocessing=pre, values=args.values)
    print(
        f"wrote {exported.path} ({exported.bytes:,} bytes): task {args.task!r} as ONNX with its "
        f"preprocessing; ONNX Runtime matches rsn2 on batches of {' and '.join(map(str, exported.batches))} "
        f"(largest difference {exported.max_abs_diff:.2g})"
    )
    return 0
