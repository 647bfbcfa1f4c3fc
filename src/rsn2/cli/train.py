"""``rsn2 train`` and ``rsn2 add-task``: your own tasks from a training file."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rsn2.cli.options import body, factory_option


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the command's parser to ``sub``."""
    train = sub.add_parser(
        "train",
        help="train your own tasks from a YAML file (CSV, .npy/.npz, image folders, JSON Lines) into one model",
        description="Read CONFIG (network, tasks with their files, stages; see docs/own-tasks.md), select and "
        "train every stage, write one model file to MODEL and print each task's test metric.",
    )
    train.add_argument("config", metavar="CONFIG", help="training YAML file")
    train.add_argument("--out", required=True, metavar="MODEL", help="model file to write (.safetensors)")
    train.add_argument("--controls", action="store_true", help="also train a dense control per task and print it")
    train.add_argument(
        "--data-dir", metavar="D", help="folder the file's data paths are relative to (default: its own)"
    )

    add = sub.add_parser(
        "add-task",
        help="train more tasks into a model's free capacity; writes a new model file",
        description="Read MODEL, select and train the tasks of CONFIG in its free capacity and write NEW_MODEL. "
        "MODEL is never modified; the earlier tasks' outputs are checked bit-identical before writing; too little "
        "free capacity is refused before training, naming the layer.",
    )
    add.add_argument("model", metavar="MODEL", help="the trained model file")
    add.add_argument("config", metavar="CONFIG", help="training YAML file with the new tasks (no network key)")
    add.add_argument("--out", required=True, metavar="NEW_MODEL", help="the new model file")
    add.add_argument("--data-dir", metavar="D", help="folder the file's data paths are relative to (default: its own)")
    factory_option(add)

    train.set_defaults(handler=run)
    add.set_defaults(handler=run)


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    from rsn2.workflow import add_task_file, load_train_file, train_file

    cfg = load_train_file(args.config, args.data_dir, network_allowed=args.command == "train")
    if args.command == "train":
        done = train_file(cfg, args.out, controls=args.controls)
    else:
        done = add_task_file(args.model, cfg, args.out, body=body(args))
    print(f"wrote {done['model']} ({done['bytes']:,} bytes)")
    if done.get("unchanged"):
        print(
            f"earlier task(s) {', '.join(done['unchanged'])}: outputs bit-identical to {args.model}'s "
            "on seeded inputs (checked before writing)"
        )
    for name, row in done["tasks"].items():
        control = f", dense control {row['control']:.4f}" if "control" in row else ""
        print(f"{name:<16} {row['kind']:<14} test {row['metric']} {row['multitask']:.4f}{control}")
    return 0
