"""``rsn2 predict``: one task (named, or inferred per sample) on a file of raw samples."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rsn2.cli.options import body, factory_option
from rsn2.network.task_inference import DEFAULT_THRESHOLD


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the command's parser to ``sub``."""
    predict = sub.add_parser(
        "predict",
        help="predict one task (named, or inferred per sample) on a CSV, .npy, image (or folder) or JSON Lines file",
        description="Run task T of MODEL on INPUT, preprocessed as the model file stores it (as serve and the "
        "ONNX export do): a CSV (the training feature columns, by name), a .npy array, an image file or a folder of "
        "images (directly in it or in one subfolder per class, as in training), or a JSON Lines file (the training "
        "text field). Writes CSV: per sample the class and each class's probability, or the predicted value in "
        "the training target's units. Without --task, each sample's task is inferred among the classification "
        "tasks that read INPUT (the one whose output is least uncertain, by normalized entropy): per sample the "
        "task, a confidence in [0, 1], the class and its probability; below --threshold the task is 'unknown'.",
    )
    predict.add_argument(
        "model",
        metavar="MODEL",
        help="an rsn2 model file (tasks of rsn2 train and add-task read raw files; others a .npy of input tensors)",
    )
    predict.add_argument("input", metavar="INPUT", help="the samples")
    factory_option(predict)
    predict.add_argument("--task", metavar="T", help="the task to run (default: inferred per sample)")
    predict.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        metavar="C",
        help="without --task: answer 'unknown' below this confidence, in [0, 1] (default %(default)s)",
    )
    predict.add_argument("--out", metavar="FILE", help="write the CSV here (default: standard output)")

    predict.set_defaults(handler=run)


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    from rsn2.workflow import predict_file

    text = predict_file(args.model, args.task, args.input, body=body(args), threshold=args.threshold)
    if args.out:
        from rsn2.io import atomic_write_bytes

        atomic_write_bytes(args.out, text.encode())
        rows = text.count("\n") - 1
        which = f"task {args.task!r}" if args.task else "tasks inferred per sample"
        print(f"wrote {args.out}: {rows} prediction(s) of {which}")
    else:
        sys.stdout.write(text)
    return 0
