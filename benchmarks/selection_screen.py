"""Screen selection and training options on a shortened experiment, beside its dense controls.

``python -m benchmarks.selection_screen CONFIG --data-dir D [--variants a,b] [--train-samples N]
[--epochs E] [--seed S] [--out FILE] [--json FILE]`` trains the experiment's stages once per variant
(an option set from :data:`VARIANTS`, each absolute: rsn2's defaults before the screens,
:data:`BEFORE`, with some options changed) on the first ``N``
training samples of each task for exactly ``E`` epochs (no early stopping), and the dense control of
every task for the same budget. It prints each task's test accuracy (full test set) and, beside it,
the output std of its subnetwork right after selection (before training; see
:func:`rsn2.subnetwork_signal`). A screen predicts which options matter; full runs confirm them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.tables import markdown_table, print_and_write
from rsn2.experiments import build_spec, load_config
from rsn2.experiments.config import ExperimentConfig
from rsn2.experiments.load_tasks import ExperimentTask, load_datasets
from rsn2.experiments.runner import control_key
from rsn2.io import atomic_write_bytes
from rsn2.network import MultitaskNetwork
from rsn2.network.dense_control import dense_control
from rsn2.selection import select_subnetworks, subnetwork_signal
from rsn2.training import TaskData, TrainConfig, evaluate, fit_stage, selection_samples, train_stage
from rsn2.training.precision import resolve_precision

# Every variant is absolute: BEFORE (rsn2's defaults before these screens) with some options changed,
# so that a variant means the same whatever the library's defaults are now.
BEFORE: dict[str, Any] = {"method": "gradient", "rescale": True, "allocation": "global", "reinit": False}
BEFORE_TRAINING: dict[str, Any] = {"rescale_lr": False}
VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {"rescale": False},  # the paper's plain carve-out
    "default": {},  # rsn2's defaults before the screens: gradient, rescale by the layer's kept fraction
    "rescale_lr": {"rescale_lr": True},
    "row_balanced": {"allocation": "row_balanced"},
    "unit_rescale": {"rescale": "unit"},
    "reinit": {"reinit": True},
    "random": {"method": "random"},  # an allocation uncorrelated with anything (SPEC section 3)
    "reinit+rescale_lr": {"reinit": True, "rescale_lr": True},  # rsn2's defaults since the screens
    "row_balanced+rescale_lr": {"allocation": "row_balanced", "rescale_lr": True},
    "row_balanced+reinit": {"allocation": "row_balanced", "reinit": True},
    "row_balanced+reinit+rescale_lr": {"allocation": "row_balanced", "reinit": True, "rescale_lr": True},
    "unit_rescale+rescale_lr": {"rescale": "unit", "rescale_lr": True},
}
_SELECTION_KEYS = {"method", "rescale", "allocation", "reinit"}


def _shortened(data: dict[str, ExperimentTask], n: int) -> dict[str, ExperimentTask]:
    return {
        t: dataclasses.replace(d, train=TaskData(d.train.x[:n], d.train.y[:n], batch_size=d.train.batch_size))
        for t, d in data.items()
    }


def screen_variant(
    config: ExperimentConfig, data: dict[str, ExperimentTask], variant: dict[str, Any], train: TrainConfig, seed: int
) -> dict[str, Any]:
    """Train every stage with ``variant``'s options; each task's test metric and output std after selection."""
    selection = {**BEFORE, **{k: v for k, v in variant.items() if k in _SELECTION_KEYS}}
    training = {**BEFORE_TRAINING, **{k: v for k, v in variant.items() if k not in _SELECTION_KEYS}}
    train = dataclasses.replace(train, **training)
    torch.manual_seed(seed)
    net = MultitaskNetwork(build_spec(config))
    signal: dict[str, float] = {}
    start = time.perf_counter()
    for stage in config.stages:
        stage_data = {t: data[t].train for t in stage}
        samples = selection_samples(stage_data, train)
        select_subnetworks(net, list(stage), samples, seed=train.seed, **selection)
        for t in stage:
            signal[t] = subnetwork_signal(net, t, samples[t][0]).output_std
        train_stage(net, stage_data, train)
    metric = {t: evaluate(net, t, d.x_test, d.y_test)["metric"] for t, d in data.items()}
    return {"metric": metric, "output_std": signal, "seconds": time.perf_counter() - start}


def screen_controls(
    config: ExperimentConfig, data: dict[str, ExperimentTask], train: TrainConfig, seed: int
) -> dict[str, float]:
    """Each task's dense control trained for the same budget (tasks on the same data share one)."""
    spec = build_spec(config)
    done: dict[Any, float] = {}
    out = {}
    for task in config.tasks:
        key = control_key(config, spec, task.name)
        if key not in done:
            torch.manual_seed(seed)
            control = dense_control(spec, task.name)
            fit_stage(control, {task.name: data[task.name].train}, train)
            d = data[task.name]
            done[key] = evaluate(control, task.name, d.x_test, d.y_test)["metric"]
        out[task.name] = done[key]
    return out


def run(
    config_path: Path,
    data_dir: str,
    variants: list[str],
    n: int,
    epochs: int,
    seed: int,
    saved: Path | None = None,
) -> tuple[str, dict[str, Any]]:
    """Screen ``variants``; with ``saved`` (a JSON file of an earlier screen of the same experiment,
    samples, epochs, seed and precision) its control and variants are reused, and the file is
    rewritten (atomically) after every new variant, so an interrupted screen resumes."""
    config = load_config(config_path)
    data = _shortened(load_datasets(config, data_dir), n)
    # a fixed budget: no early stopping, so every variant and control trains exactly ``epochs`` epochs
    train = config.train_config(max_epochs=epochs, patience=epochs + 1, progress=False)
    precision = resolve_precision(train.precision, torch.device("cpu"))
    setup = {"experiment": config.name, "train_samples": n, "epochs": epochs, "seed": seed, "precision": precision}
    results: dict[str, Any] = dict(setup)
    if saved is not None and saved.is_file():
        earlier = json.loads(saved.read_text())
        if {k: earlier.get(k) for k in setup} == setup:
            results = earlier
    if "control" not in results:
        results["control"] = screen_controls(config, data, train, seed)
    results.setdefault("variants", {})
    for name in variants:
        if name in results["variants"]:
            continue
        results["variants"][name] = screen_variant(config, data, VARIANTS[name], train, seed)
        print(f"[{config.name}] {name}: {results['variants'][name]['metric']}", file=sys.stderr, flush=True)
        if saved is not None:
            saved.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(saved, (json.dumps(results, indent=1) + "\n").encode())
    results["variants"] = {v: results["variants"][v] for v in variants}  # the table shows what was asked
    return screen_table(config, results), results


def screen_table(config: ExperimentConfig, results: dict[str, Any]) -> str:
    """One row per variant: each task's test metric (its output std right after selection), the mean,
    and the worst gap to the task's control; the controls' row first."""
    tasks = [t.name for t in config.tasks]
    rows: list[dict[str, Any]] = [
        {"variant": "dense control", **{t: f"{results['control'][t]:.1%}" for t in tasks}, "mean": "", "worst gap": ""}
    ]
    for name, r in results["variants"].items():
        row: dict[str, Any] = {"variant": name}
        for t in tasks:
            row[t] = f"{r['metric'][t]:.1%} ({r['output_std'][t]:.2g})"
        row["mean"] = f"{sum(r['metric'][t] for t in tasks) / len(tasks):.1%}"
        gap = max(results["control"][t] - r["metric"][t] for t in tasks)
        row["worst gap"] = f"{gap * 100:+.1f}"
        rows.append(row)
    head = (
        f"{config.name} screen, seed {results['seed']}, {results['precision']}: "
        f"the first {results['train_samples']} training samples of "
        f"each task, {results['epochs']} epochs, no early stopping; test metric on the full test set (in brackets: "
        "the subnetwork's output std right after selection, before training); worst gap = largest "
        "(control - multitask) in points. Variants change rsn2's defaults from before the screens (reinit and "
        "rescale_lr off); `reinit+rescale_lr` is rsn2's defaults since."
    )
    return head + "\n\n" + markdown_table(rows, ["variant", *tasks, "mean", "worst gap"]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.selection_screen", description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path, help="experiment file, e.g. experiments/exp1.yaml")
    parser.add_argument("--data-dir", required=True, help="folder holding the datasets (e.g. ../shared/data)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--train-samples", type=int, default=12000, help="training samples per task (default 12000)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs, no early stopping (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument(
        "--json", type=Path, help="write every figure here after each variant; a rerun reuses the variants in it"
    )
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; allowed: {', '.join(VARIANTS)}")
    if args.train_samples < 1 or args.epochs < 1:
        parser.error("--train-samples and --epochs must be >= 1")
    return print_and_write(
        lambda: run(args.config, args.data_dir, variants, args.train_samples, args.epochs, args.seed, args.json)[0],
        args.out,
        "benchmarks.selection_screen",
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
