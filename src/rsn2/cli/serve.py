"""``rsn2 serve``: every task of a model over HTTP (Open Inference Protocol v2)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from rsn2.cli.options import body, dense_budget, factory_option, values_option
from rsn2.network.task_inference import DEFAULT_THRESHOLD


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the command's parser to ``sub``."""
    serve = sub.add_parser(
        "serve",
        help="serve every task of a model over HTTP (Open Inference Protocol v2, one task = one model name)",
        description="Load MODEL and answer GET /v2/health/live, /v2/health/ready, /v2/models/{task} and POST "
        "/v2/models/{task}/infer for every task, from one process. Each task takes raw inputs and answers as "
        "rsn2 predict does (the model file's preprocessing; GET /v2/models/{task} names its inputs and outputs); "
        "JSON bodies or Triton's binary tensor data extension. Requests to one task are batched dynamically "
        "(up to --max-batch samples, waiting at most --max-wait-ms for more). Bad requests get a 4xx JSON error. "
        "The model name 'auto' (unless a task has that name) takes inputs without a task name: each classification "
        "task that reads them runs, and per sample the one whose output is least uncertain answers (outputs task, "
        "confidence, label, probability; task 'unknown' below --task-threshold).",
    )
    serve.add_argument("model", metavar="MODEL", help="path of an rsn2 .safetensors model file")
    factory_option(serve)
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--max-batch", type=int, default=64, help="most samples per batch (default 64)")
    serve.add_argument("--max-wait-ms", type=float, default=5.0, help="longest wait for a batch to fill (default 5)")
    serve.add_argument(
        "--max-body-mb", type=float, default=8.0, help="largest request body accepted, in MiB (default 8)"
    )
    serve.add_argument(
        "--dense-budget",
        type=dense_budget,
        default=1.0,
        metavar="X",
        help="dense kernel copies all tasks may hold together, in multiples of one dense model's bytes; layers "
        "beyond it run the sparse kernels at every batch size ('none': no budget; default 1)",
    )
    serve.add_argument(
        "--compact-steps",
        action="store_true",
        help="hold each task's packed linear layers with 4-bit column steps: less memory (4.5 bytes per kept "
        "weight and one per longer step, instead of 5), slower sparse kernels (docs/performance.md, 'Serving memory')",
    )
    values_option(serve, "hold every task's weights")
    serve.add_argument(
        "--task-threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        metavar="C",
        help="the 'auto' model answers task 'unknown' below this confidence, in [0, 1] (default %(default)s)",
    )

    serve.set_defaults(handler=run)


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    from rsn2.deploy.server import ServeSettings, serve

    settings = ServeSettings(
        args.max_batch,
        args.max_wait_ms,
        int(args.max_body_mb * 1024 * 1024),
        args.dense_budget,
        args.compact_steps,
        args.task_threshold,
        args.values,
    )
    # no name here holds the network: serve lets it go once the task models are copied out
    serve(**served_model(args.model, body(args)), host=args.host, port=args.port, settings=settings)
    return 0


def served_model(path: str, module: Any = None) -> dict[str, Any]:
    """``network`` and each task's stored ``preprocessing`` of a model file, as :func:`serve` takes them."""
    from rsn2.io import load_model, read_metadata
    from rsn2.preprocessing import preprocessing_of

    network, meta = load_model(path, body=module), read_metadata(path)
    return {
        "network": network,
        "preprocessing": {t: preprocessing_of(network.task_spec(t), meta) for t in network.task_names},
    }
