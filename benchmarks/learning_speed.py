"""How fast a pruned CONV-A subnetwork learns next to its dense control, with and without ``rescale_lr``.

``python -m benchmarks.learning_speed --data-dir ../shared/data [--samples N] [--epochs E] [--seeds S]
[--keep K] [--out FILE]`` trains, on the first ``N`` Fashion-MNIST training images, for exactly ``E``
epochs (no early stopping) and per seed: the dense control, a subnetwork keeping ``K`` of every trunk
layer at the plain learning rate, and the same subnetwork with ``rescale_lr``. It prints (and writes
to ``FILE``) the validation loss after every epoch and the test accuracy on the full test set.
Every model of a seed starts from the same seed, so the rows differ only in what they compare.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from benchmarks.tables import write_table
from rsn2.experiments import build_spec, parse_config
from rsn2.experiments.load_tasks import load_datasets
from rsn2.network import MultitaskNetwork
from rsn2.network.dense_control import dense_control
from rsn2.selection import SelectionConfig
from rsn2.training import TaskData, TrainConfig, evaluate, fit_stage

VARIANTS = ("dense control", "subnetwork", "subnetwork, rescale_lr")


def run(data_dir: str, samples: int, epochs: int, seeds: int, keep: float) -> str:
    """The markdown table of the comparison (one row per seed and variant)."""
    config = parse_config(
        {
            "name": "learning-speed",
            "title": "CONV-A on Fashion-MNIST: dense vs subnetwork vs subnetwork with rescale_lr",
            "network": {"kind": "conv-a"},
            "tasks": {"fashion": {"dataset": "fashion-mnist", "keep_fraction": keep}},
            "stages": [["fashion"]],
        }
    )
    data = load_datasets(config, data_dir)["fashion"]
    train_data = TaskData(data.train.x[:samples], data.train.y[:samples])
    spec = build_spec(config)
    lines = [
        f"CONV-A, Fashion-MNIST: first {samples} training images (10% of them for validation), "
        f"{epochs} epochs, no early stopping, keep {keep:g}; test accuracy on all {len(data.y_test)} test images.",
        "",
        "| seed | model | validation loss after each epoch | test accuracy | seconds |",
        "|---|---|---|---|---|",
    ]
    for seed in range(seeds):
        for variant in VARIANTS:
            # fp32 and no reinit: the settings this comparison was made with, whatever rsn2's defaults are
            train = TrainConfig(
                max_epochs=epochs,
                patience=epochs + 1,
                seed=seed,
                progress=False,
                rescale_lr="rescale_lr" in variant,
                precision="fp32",
            )
            torch.manual_seed(seed)
            net = dense_control(spec, "fashion") if variant == "dense control" else MultitaskNetwork(spec)
            start = time.perf_counter()
            result = fit_stage(net, {"fashion": train_data}, train, selection=SelectionConfig(reinit=False))
            seconds = time.perf_counter() - start
            losses = ", ".join(f"{h['val_loss']['fashion']:.3f}" for h in result.history)
            accuracy = evaluate(net, "fashion", data.x_test, data.y_test)["metric"]
            lines.append(f"| {seed} | {variant} | {losses} | {accuracy:.2%} | {seconds:.0f} |")
            print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.learning_speed", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder holding fashion-mnist/ (e.g. ../shared/data)")
    parser.add_argument("--samples", type=int, default=12_000, help="training images used (default 12000)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs, all of them trained (default 4)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds 0..S-1 (default 2)")
    parser.add_argument("--keep", type=float, default=0.2, help="fraction of each trunk layer kept (default 0.2)")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    table = run(args.data_dir, args.samples, args.epochs, args.seeds, args.keep)
    write_table(args.out, "benchmarks.learning_speed", argv, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
