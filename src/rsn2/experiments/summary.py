"""All experiments side by side: ``rsn2 summary`` writes ``docs/results/README.md`` from the runs' results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rsn2.experiments.config import load_config
from rsn2.experiments.report import _fmt, target_status
from rsn2.io import atomic_write_bytes


def summarize(configs: list[Path], results_dir: Path) -> str:
    """Markdown: one row per task of every experiment file in ``configs``, ours beside the paper's.

    An experiment with no ``results_dir/<name>/results.json`` (or only a smoke run) is listed as such,
    so missing runs stay visible.
    """
    lines = [
        "# Results: the eight experiments side by side with the paper",
        "",
        f"Written by `rsn2 summary {results_dir}` from each `<experiment>/results.json`; every number below",
        "comes from those files (their `report.md` names the exact command, device and wall time).",
        "Accuracy in %, Boston in test MSE on the min-max scaled target. Target: at most 1.0 point below the",
        "paper's multitask figure and at most 1.0 point below our own control (MSE: at most 5% above either).",
        "Trained model files are not committed when over 5 MB; the command in each report recreates them.",
        "A run whose settings are marked *earlier* was made before its settings were recorded, under rsn2's",
        "earlier defaults (no `reinit`, no `rescale_lr`, fp32, early stopping per stage): rerunning its file now",
        "trains with today's defaults (docs/method.md), so its numbers are not what the command gives today.",
        "",
        "| experiment | task | multitask (ours) | control (ours) | paper multitask | paper control | seeds | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for path in configs:
        config = load_config(path)
        found = results_dir / config.name / "results.json"
        if not found.exists():
            lines.append(f"| {config.name}: {config.title} | - | not run yet | | | | 0 | - |")
            continue
        results: dict[str, Any] = json.loads(found.read_text())
        smoke = " (smoke run only)" if results.get("smoke") else ""
        for i, (task, row) in enumerate(results["tasks"].items()):
            m = row["metric"]
            head = f"[{config.name}]({config.name}/report.md){smoke}" if i == 0 else ""
            mt, ct = row["multitask"], row["control"]
            lines.append(
                f"| {head} | {task} | {_fmt(m, mt['mean'])} ± {_fmt(m, mt['std'])} | "
                f"{_fmt(m, ct['mean'])} ± {_fmt(m, ct['std'])} | {_fmt(m, row['paper'].get('multitask'))} | "
                f"{_fmt(m, row['paper'].get('control'))} | {results['seeds']} | {target_status(row)} |"
            )
        notes.append(
            f"- {config.name}: {results['device']}, {results.get('precision', 'fp32')}, {_settings(results)}; "
            f"wall time {results['wall_seconds']:.0f} s; model file "
            f"{results['model_bytes']:,} bytes vs the controls' {results['controls_bytes']:,}"
        )
    lines += ["", "## Runs", "", *notes, ""]
    return "\n".join(lines)


def write_summary(configs: list[Path], results_dir: Path) -> Path:
    """Write :func:`summarize` to ``results_dir/README.md`` (atomically) and return its path."""
    out = results_dir / "README.md"
    atomic_write_bytes(out, summarize(configs, results_dir).encode())
    return out


def _settings(results: dict[str, Any]) -> str:
    """``reinit on/off, rescale_lr on/off`` (and the early-stopping scope where recorded) from a results
    file, or *earlier* when it records none."""
    if "selection" not in results:
        return "settings *earlier*"
    reinit = "on" if results["selection"].get("reinit") else "off"
    rescale_lr = "on" if results["training"].get("rescale_lr") else "off"
    scope = results["training"].get("early_stopping", "stage")  # runs before the setting had one stopper
    return f"reinit {reinit}, rescale_lr {rescale_lr}, early stopping per {scope}"
