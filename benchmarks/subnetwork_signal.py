"""How much signal each subnetwork of an experiment's first stage passes forward right after selection.

``python -m benchmarks.subnetwork_signal CONFIG --data-dir D [--seed S] [--smoke] [--selection K=V ...]
[--out FILE]`` builds
the experiment's network from seed ``S`` exactly as ``rsn2 run`` does, selects the first stage's
subnetworks on the same sample batches (:func:`rsn2.training.selection_samples`), and, before any
training, runs every task of that stage on its sample batch. Per task and ReLU it prints (and writes
to ``FILE``) the share of positive activations, the share of dead units (never positive on the
batch) and the activation spread, then the spread of the outputs and the share of positive weights
among those the task keeps in its first multitask layer. A subnetwork that starts silent learns late
(docs/method.md, "The last subnetwork takes what is left"). ``--selection`` overrides the experiment
file's selection options (``reinit=true``, ``allocation=row_balanced``, ``rescale=unit``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks.tables import print_and_write
from rsn2.errors import SpecError
from rsn2.experiments import build_spec, load_config
from rsn2.experiments.load_tasks import load_datasets
from rsn2.network import MultitaskNetwork
from rsn2.selection import SignalReport, select_subnetworks, subnetwork_signal
from rsn2.training import selection_samples


def run(config_path: Path, data_dir: str, seed: int, smoke: bool, overrides: dict[str, Any] | None = None) -> str:
    """The markdown table: one row per task of the first stage, in selection order."""
    config = load_config(config_path)
    selection = replace(config.selection_config(), **(overrides or {}))
    stage = list(config.stages[0])
    data = load_datasets(config, data_dir, smoke)
    train = config.train_config()
    samples = selection_samples({t: data[t].train for t in stage}, train)
    torch.manual_seed(seed)
    net = MultitaskNetwork(build_spec(config))
    select_subnetworks(net, stage, samples, selection, seed=train.seed)
    reports = [subnetwork_signal(net, t, samples[t][0]) for t in stage]
    keys = [layer.key for layer in reports[0].layers]
    subset = "smoke subsets" if smoke else "full data"
    changed = ", ".join(f"{k}={v}" for k, v in (overrides or {}).items())
    first = next(iter(reports[0].positive_weights), "-")
    lines = [
        f"{config.name} ({config.title}), seed {seed}, {subset}"
        + (f", selection options {changed}" if changed else "")
        + ": the first stage's subnetworks right after "
        f"selection, before training, each on its own selection batch ({len(samples[stage[0]][0])} samples). "
        "Per ReLU: positive activations / dead units (never positive on the batch) / activation std. "
        f"Positive weights: share of the task's kept weights in its first multitask layer ({first}) that are "
        "positive. Units without inputs: the largest share, over the trunk's conv layers and over its dense layers, "
        "of the task's units (filters, rows) that keep no input at all, and that layer.",
        "",
        "| task | " + " | ".join(keys) + " | output std | positive weights | units without inputs |",
        "|---|" + "---|" * (len(keys) + 3),
    ]
    kinds = {k: "conv" if layer.weight.dim() == 4 else "dense" for k, layer in net.multitask_layers()}
    lines += [_row(r, kinds) for r in reports]
    return "\n".join(lines) + "\n"


def _row(report: SignalReport, kinds: dict[str, str]) -> str:
    cells = [f"{s.active:.0%} / {s.dead_units:.0%} / {s.std:.3g}" for s in report.layers]
    first = next(iter(report.positive_weights.values()), float("nan"))
    parts = []
    for kind in ("conv", "dense"):
        trunk = {k: v for k, v in report.empty_units.items() if k.startswith("trunk.") and kinds.get(k) == kind}
        if trunk:
            worst = max(trunk, key=lambda k: trunk[k])
            parts.append(f"{kind} {trunk[worst]:.0%} ({worst})")
    empty = ", ".join(parts) or "-"
    return f"| {report.task} | " + " | ".join(cells) + f" | {report.output_std:.3g} | {first:.0%} | {empty} |"


def _overrides(pairs: list[str]) -> dict[str, Any]:
    """``["reinit=true", "allocation=row_balanced"]`` as selection keyword arguments (YAML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in ("method", "rescale", "allocation", "reinit"):
            raise SpecError(
                f"--selection takes KEY=VALUE with KEY one of method, rescale, allocation, reinit; got {pair!r}"
            )
        out[key] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.subnetwork_signal", description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path, help="experiment file, e.g. experiments/exp1.yaml")
    parser.add_argument("--data-dir", required=True, help="folder holding the datasets (e.g. ../shared/data)")
    parser.add_argument("--seed", type=int, default=0, help="the seed rsn2 run initialises with (default 0)")
    parser.add_argument("--smoke", action="store_true", help="the first 256 training samples of each dataset")
    parser.add_argument(
        "--selection",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override selection options: reinit=true, allocation=row_balanced, rescale=unit|layer|true|false",
    )
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    return print_and_write(
        lambda: run(args.config, args.data_dir, args.seed, args.smoke, _overrides(args.selection)),
        args.out,
        "benchmarks.subnetwork_signal",
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
