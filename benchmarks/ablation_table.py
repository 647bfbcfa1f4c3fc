"""The ablation table: each experiment whose later subnetworks trailed, under every procedure measured.

``python -m benchmarks.ablation_table [--results docs/results] [--out FILE]`` reads the committed
runs and screens and prints, for exp1, exp2, exp6 and exp8, one row per procedure: the paper's plain
carve-out, rsn2's earlier defaults, each option alone, today's defaults (one seed beside the others,
and the 3-seed result), and the trailing task trained alone in its own network at the same keep
fraction (``experiments/ablations/alone/``: what that share of the network reaches without sharing), with

- each task's test accuracy and, in brackets, how many points it ends below the run's own dense
  control (negative: above it), and the worst such gap over the subnetworks;
- from the screen of the same procedure (``benchmarks.selection_screen``: one seed, 12,000 samples,
  3 epochs), its worst gap and the smallest output std of a subnetwork right after selection, before
  training (the subnetwork signal; a starved subnetwork's is near zero).

A procedure without a full-length run says "not run"; nothing is filled in.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.tables import markdown_table, print_and_write


@dataclass(frozen=True)
class Procedure:
    """One row: its label, its run folder under the results folder, and its screen variant."""

    label: str
    run: str
    screen: str | None


def _options_rows(exp: str) -> list[Procedure]:
    full = f"ablations/full/{exp}"
    return [
        Procedure("paper: plain carve-out", f"{full}-paper", "paper"),
        Procedure("earlier defaults", f"{full}-before", "default"),
        Procedure("earlier defaults, fp32, stopping per stage (first run)", f"{full}-earlier", "default"),
        Procedure("rescale_lr", f"{full}-rescale-lr", "rescale_lr"),
        Procedure("row_balanced", f"{full}-row-balanced", "row_balanced"),
        Procedure("unit_rescale", f"{full}-unit-rescale", "unit_rescale"),
        Procedure("reinit", f"{full}-reinit", "reinit"),
    ]


DEFAULTS = "reinit+rescale_lr"


def _defaults_rows(exp: str) -> list[Procedure]:
    """Today's defaults: one seed beside the options (same device), relative stopping, 3 seeds."""
    return [
        Procedure("defaults", f"ablations/full/{exp}-defaults", DEFAULTS),
        Procedure("defaults, relative stopping (1%)", f"ablations/full/{exp}-rel-stopping", DEFAULTS),
        Procedure("defaults, 3 seeds", exp, DEFAULTS),
    ]


PROCEDURES: dict[str, list[Procedure]] = {
    "exp1": [*_options_rows("exp1"), *_defaults_rows("exp1")],
    "exp2": [
        *_options_rows("exp2"),
        *_defaults_rows("exp2"),
        Procedure("defaults, hard selected first", "exp2-order", None),
        Procedure("hard alone in its network, same keep, defaults", "ablations/full/exp2-hard-alone", None),
    ],
    "exp6": [
        *_options_rows("exp6"),
        Procedure("defaults, 3 seeds", "exp6", DEFAULTS),
        Procedure("fashion alone in its network, same keep, defaults", "ablations/full/exp6-fashion-alone", None),
    ],
    "exp8": [
        *_options_rows("exp8"),
        Procedure("reinit + rescale_lr, stopping per stage", "exp8-reinit-rescale-lr", DEFAULTS),
        Procedure(
            "row_balanced + reinit + rescale_lr, stopping per stage",
            "exp8-row-balanced",
            "row_balanced+reinit+rescale_lr",
        ),
        Procedure("defaults", "exp8-task-stopping", DEFAULTS),
        Procedure("defaults, 3 seeds", "exp8", DEFAULTS),
        Procedure("cifar alone in its network, same keep, defaults", "ablations/full/exp8-cifar-alone", None),
        Procedure("UTKFace tasks without cifar, same keeps, defaults", "ablations/full/exp8-utkface-alone", None),
    ],
}
TITLES = {
    "exp1": "exp1: CONV-A, five 20% subnetworks on Fashion-MNIST",
    "exp2": "exp2: CONV-A, Fashion-MNIST easy + hard, 20% each",
    "exp6": "exp6: CONV-A, CIFAR-10, then MNIST + Fashion-MNIST",
    "exp8": "exp8: CONV-B, UTKFace age + gender + race + CIFAR-10",
}


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _is_defaults_rerun(results: dict[str, Any]) -> bool:
    """Whether a main experiment's committed result was made under today's defaults (runs made
    before the options existed record no selection settings)."""
    selection = results.get("selection") or {}
    return bool(selection.get("reinit")) and results.get("seeds", 0) >= 3


def _gap(row: dict[str, Any]) -> float:
    """Points below the dense control (accuracy), or percent above it (an error such as MSE)."""
    m, c = row["multitask"]["mean"], row["control"]["mean"]
    return 100 * (c - m) if row["metric"] == "accuracy" else 100 * (m - c) / c


def _cell(row: dict[str, Any], seeds: int) -> str:
    value = row["multitask"]["mean"]
    shown = f"{100 * value:.1f}" if row["metric"] == "accuracy" else f"{value:.4f}"
    if seeds > 1:
        std = row["multitask"]["std"]
        shown += f" ± {100 * std:.1f}" if row["metric"] == "accuracy" else f" ± {std:.4f}"
    return f"{shown} ({_gap(row):+.1f})"


def _screen_figures(screen: dict[str, Any] | None, variant: str | None) -> tuple[str, str]:
    if screen is None or variant is None or variant not in screen["variants"]:
        return "", ""
    v, control = screen["variants"][variant], screen["control"]
    worst = max(100 * (control[t] - v["metric"][t]) for t in control)
    task, std = min(v["output_std"].items(), key=lambda kv: kv[1])
    return f"{worst:+.1f}", f"{std:.2g} ({task})"


def experiment_table(results_dir: Path, exp: str, links_from: Path) -> str:
    """The table of one experiment; its links to the runs' reports are relative to ``links_from``."""
    screen = _load(results_dir / "ablations" / f"screen-{exp}.json")
    rows: list[dict[str, Any]] = []
    tasks: list[str] = []
    for proc in PROCEDURES[exp]:
        results = _load(results_dir / proc.run / "results.json")
        if results is not None and proc.run == exp and not _is_defaults_rerun(results):
            results = None  # the main folder still holds a run made before today's defaults
        screen_gap, signal = _screen_figures(screen, proc.screen)
        row: dict[str, Any] = {"procedure": proc.label, "screen worst gap": screen_gap, "screen signal": signal}
        if results is None:
            row["run"] = "not run"
        else:
            seeds = results["seeds"]
            link = os.path.relpath(results_dir / proc.run / "report.md", links_from)
            row["run"] = f"[{results['device'].split(':')[0]}, {seeds} seed{'s' if seeds > 1 else ''}]({link})"
            subnetworks = [t for t, r in results["tasks"].items() if r.get("kept_fraction") is not None]
            tasks += [t for t in results["tasks"] if t not in tasks]
            row |= {t: _cell(r, results["seeds"]) for t, r in results["tasks"].items()}
            row["worst gap"] = f"{max(_gap(results['tasks'][t]) for t in subnetworks):+.1f}"
        rows.append(row)
    keys = ["procedure", "run", *tasks, "worst gap", "screen worst gap", "screen signal"]
    return f"### {TITLES[exp]}\n\n" + markdown_table(rows, keys) + "\n"


def ablation_tables(results_dir: Path, links_from: Path | None = None) -> str:
    """Every experiment's table, in the order of :data:`PROCEDURES`; links relative to ``links_from``
    (default: the results folder)."""
    return "\n".join(experiment_table(results_dir, exp, links_from or results_dir) for exp in PROCEDURES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ablation_table", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("docs/results"), help="the results folder")
    parser.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    links_from = args.out.parent if args.out else args.results
    return print_and_write(
        lambda: ablation_tables(args.results, links_from), args.out, "benchmarks.ablation_table", given
    )


if __name__ == "__main__":
    raise SystemExit(main())
