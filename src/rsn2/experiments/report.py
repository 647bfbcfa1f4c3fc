"""The human-readable outputs of a run: report.md in the paper's table form, and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from rsn2.io import atomic_write_bytes
from rsn2.network.task_kinds import TASK_KINDS

PAPER_GAP = 0.01  # the target: an accuracy at most 1.0 point below the paper's multitask figure
CONTROL_GAP = 0.01  # and at most 1.0 point below its own dense control
MSE_GAP = 0.05  # an MSE at most 5% above either
HIGHER_IS_BETTER = {kind.metric for kind in TASK_KINDS.values() if kind.higher_is_better}


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if metric == "accuracy" else f"{value:.4f}"


def target_status(row: dict[str, Any]) -> str:
    """Whether a task meets the targets (higher accuracy / lower MSE is better)."""
    sign = 1 if row["metric"] in HIGHER_IS_BETTER else -1
    ours, control = row["multitask"]["mean"], row["control"]["mean"]
    paper = row["paper"].get("multitask")
    misses = []
    if paper is not None and sign * (ours - paper) < -(PAPER_GAP if sign > 0 else abs(paper) * MSE_GAP):
        misses.append("below paper")
    if sign * (ours - control) < -(CONTROL_GAP if sign > 0 else abs(control) * MSE_GAP):
        misses.append("below control")
    return "met" if not misses else "MISSED: " + ", ".join(misses)


def _settings_line(results: dict[str, Any]) -> str:
    """The selection options and the training settings that shape the method (not recorded by runs made
    before they were)."""
    if "selection" not in results:
        return "Selection and training settings: not recorded (a run made before they were)."
    selection = ", ".join(f"{k}={v}" for k, v in results["selection"].items())
    keys = (
        "rescale_lr",
        "early_stopping",
        "min_delta",
        "min_delta_mode",
        "patience",
        "batch_size",
        "lr",
        "memory_format",
    )
    training = ", ".join(f"{k}={results['training'][k]}" for k in keys if k in results["training"])
    return f"Selection: {selection}; training: {training}"


def write_report(results: dict[str, Any], path: Path) -> None:
    lines = [f"# {results['experiment']}: {results['title']}", ""]
    if results["smoke"]:
        lines += ["**Smoke run** (tiny subsets, one epoch): these numbers only show that the pipeline runs.", ""]
    lines += [
        f"Command: `{results['command']}`  ",
        f"Device: {results['device']}; training precision: {results.get('precision', 'fp32')}; "
        f"processes: {results.get('processes', 1)}; "
        f"wall time {results['wall_seconds']} s; seeds: {results['seeds']}  ",
        _settings_line(results),
        "",
        "| task | metric | multitask (mean ± std) | control (mean ± std) | paper multitask | paper control "
        "| kept | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in results["tasks"].items():
        m = row["metric"]
        mt, ct = row["multitask"], row["control"]
        kept = f"{row['kept_fraction']:.1%}" if row["kept_fraction"] is not None else "-"
        lines.append(
            f"| {name} | {m} | {_fmt(m, mt['mean'])} ± {_fmt(m, mt['std'])} | {_fmt(m, ct['mean'])} ± "
            f"{_fmt(m, ct['std'])} | {_fmt(m, row['paper'].get('multitask'))} | "
            f"{_fmt(m, row['paper'].get('control'))} | {kept} | {target_status(row)} |"
        )
    lines.append("")
    shared: dict[str, list[str]] = {}
    for name, row in results["tasks"].items():
        if row.get("control_trained_as", name) != name and row.get("kept_fraction") is not None:
            shared.setdefault(row["control_trained_as"], []).append(name)
    for owner, users in shared.items():
        lines += [f"{', '.join(users)}: scored with the dense control trained for {owner} (same data and layers).", ""]
    lines += [
        f"Model file: {results['model_bytes']:,} bytes; the dense controls together (one per task): "
        f"{results['controls_bytes']:,} bytes.",
        "",
    ]
    if len(results["stages"]) > 1:
        lines += [
            "## Test loss of every task after every stage (seed 0)",
            "",
            "| after stage | " + " | ".join(results["tasks"]) + " |",
            "|---|" + "---|" * len(results["tasks"]),
        ]
        for i, losses in enumerate(results["stage_losses"][0]):
            cells = [f"{losses[t]:.6f}" if t in losses else "-" for t in results["tasks"]]
            lines.append(f"| {i + 1}: {' + '.join(results['stages'][i])} | " + " | ".join(cells) + " |")
        lines.append("")
    if results["data_notes"]:
        lines += ["## Data notes", ""] + [f"- {t}: {n}" for t, n in results["data_notes"].items()] + [""]
    atomic_write_bytes(path, "\n".join(lines).encode())


def write_figures(results: dict[str, Any], folder: Path) -> None:
    """``bars.png`` (multitask vs control vs paper per task) and, for multi-stage runs,
    ``stage_losses.png`` (each task's test loss after each stage: the paper's Figures 3-5)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(results["tasks"])
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(names)), 3))
    width = 0.27
    for i, (label, key) in enumerate((("multitask", "multitask"), ("control", "control"), ("paper", None))):
        values = [
            results["tasks"][n]["paper"].get("multitask", float("nan"))
            if key is None
            else results["tasks"][n][key]["mean"]
            for n in names
        ]
        ax.bar([j + (i - 1) * width for j in range(len(names))], values, width, label=label)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("accuracy / MSE")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "bars.png", dpi=100)
    plt.close(fig)
    if len(results["stages"]) > 1:
        fig, ax = plt.subplots(figsize=(5, 3))
        losses = results["stage_losses"][0]
        for t in names:
            xs = [i + 1 for i, stage in enumerate(losses) if t in stage]
            if xs:
                ax.plot(xs, [losses[i - 1][t] for i in xs], marker="o", label=t)
        ax.set_xlabel("after stage")
        ax.set_ylabel("test loss")
        ax.set_xticks(range(1, len(losses) + 1))
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(folder / "stage_losses.png", dpi=100)
        plt.close(fig)
