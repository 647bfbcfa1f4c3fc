"""``rsn2 cl summary DIR``: every benchmark's results side by side, as ``DIR/results.json`` and ``DIR/README.md``.

``results.json`` is shaped ``{benchmark: {method: {"ACC": {"values", "mean", "std"}, "BWT": {...},
"forgetting": {...}, "LA": {...}, "seeds": n}}}``, accuracies in percent, read from each
``DIR/<benchmark>/results.json`` that :func:`~rsn2.continual.run_benchmark` wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rsn2.continual.config import METHODS, PACKNET_READS_EARLIER, RSN2_TRANSFER
from rsn2.errors import ResultsFolderError
from rsn2.io import atomic_write_bytes

CONTINUAL_METHODS = ("packnet", "ewc", "finetune", "supsup", "wsn", "gpm")
SHARED_INPUT_TARGETS = ("pmnist", "omniglot-rotation")
"""Benchmarks where rsn2's worst task must end within 2 points of its best."""
"""Published continual methods rsn2's ACC is compared with (STL and joint training are bounds)."""


def collect(folder: Path) -> dict[str, dict[str, Any]]:
    """``{benchmark: its results.json}`` for every ``folder/<name>/results.json`` of a full (not smoke) run."""
    out = {}
    for path in sorted(folder.glob("*/results.json")):
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultsFolderError(f"{path} is not a readable results file: {exc}") from None
        if isinstance(results, dict) and "methods" in results and not results.get("smoke"):
            out[results["benchmark"]["name"]] = results
    return out


def capacity_section(folder: Path) -> list[str]:
    """The README lines for ``folder/capacity/results.json`` (:mod:`rsn2.continual.capacity`), if there."""
    path = folder / "capacity" / "results.json"
    if not path.is_file():
        return []
    sweep = json.loads(path.read_text(encoding="utf-8"))
    if sweep.get("smoke"):
        return []
    b, stl = sweep["benchmark"], sweep["stl_reference"]
    lines = [
        f"## Capacity: {b['title']}, rsn2 until the network is full",
        "",
        f"`rsn2 cl capacity benchmarks/cl/{b['name']}.yaml --out {folder}/capacity` (seed {sweep['seed']}, "
        f"{b['training']['epochs']} epochs at batch {b['training']['batch_size']}). Each keep fraction trains one "
        "task per stage until the next one no longer fits; that task is refused with a `CapacityError` before "
        f"anything changes. STL: one dense model per task on the first {stl['tasks']} tasks, {stl['mean']:.2f}% "
        "on average. Accuracy of each task when learned is its final accuracy too (BWT 0).",
        "",
        "| keep per task | tasks that fit | ACC | first task > 1 point below STL | train s | how the run ended |",
        "|---|---|---|---|---|---|",
    ]
    for f, row in sweep["fractions"].items():
        ended = row["capacity_error"] or "the stream ended"
        below = row["first_below_stl"] if row["first_below_stl"] is not None else "none"
        lines.append(
            f"| {float(f):.0%} | {row['tasks']} | {row['ACC']:.2f} | {below} | {row['train_seconds']:.0f} | {ended} |"
        )
    return [*lines, "", "![accuracy of each task when learned](capacity/capacity.png)", ""]


def combined(all_results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The issue's ``results.json`` shape: metrics per benchmark and method."""
    keep = ("ACC", "BWT", "forgetting", "LA", "seeds")
    return {
        bench: {m: {k: e[k] for k in keep if k in e} for m, e in results["methods"].items()}
        for bench, results in all_results.items()
    }


def _cell(stat: dict[str, Any] | None, digits: int = 2) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    if len(stat.get("values", [])) > 1:
        return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
    return f"{stat['mean']:.{digits}f}"


def targets(bench: str, results: dict[str, Any]) -> list[str]:
    """The issue's targets for rsn2 on this benchmark, each ``met`` or ``MISSED`` with the figures."""
    methods = results["methods"]
    modes = [m for m in RSN2_TRANSFER if m in methods]
    if not modes:
        return []
    best = max(modes, key=lambda m: methods[m]["ACC"]["mean"])
    ours = methods[best]
    lines = []
    for mode in modes:
        bwt = methods[mode]["BWT"]["values"]
        lines.append(
            f"BWT exactly 0.0 in every seed ({mode}): {'met' if all(v == 0.0 for v in bwt) else 'MISSED'} ({bwt})"
        )
    for packnet in (m for m in PACKNET_READS_EARLIER if m in methods):
        a, b = ours["ACC"]["mean"], methods[packnet]["ACC"]["mean"]
        lines.append(
            f"ACC of rsn2's best mode ({best}) at least {packnet}'s (same network, same run): "
            f"{'met' if a >= b else 'MISSED'} ({a:.2f} vs {b:.2f})"
        )
    if bench in SHARED_INPUT_TARGETS:  # the worst task within 2 points of the best (the allocation target)
        spread = max(ours["final_mean"]) - min(ours["final_mean"])
        lines.append(
            f"Worst task within 2 points of the best ({best}): {'met' if spread <= 2.0 else 'MISSED'} "
            f"({min(ours['final_mean']):.2f} to {max(ours['final_mean']):.2f})"
        )
    published = {m: v for m, v in results["published"]["acc"].items() if m in CONTINUAL_METHODS}
    if bench == "pmnist" and published:
        best = max(published.values())
        bar = max(best, 96.5)
        a = ours["ACC"]["mean"]
        lines.append(
            f"ACC above every published continual method (best {best:.2f}) and at least 96.5: "
            f"{'met' if a > best and a >= 96.5 else 'MISSED'} ({a:.2f} vs {bar:.2f})"
        )
    return lines


CLASS_INCREMENTAL_TARGETS = {"split-mnist": 80.0}
"""Benchmarks (and their variants, ``<name>-...``) with a class-incremental ACC target (percent, per
sample, rsn2 without old data)."""

TASK_ID_TARGETS = {"pmnist": ("128", 99.0)}
"""Benchmarks with a task-identification target: (batch size, percent)."""

WIDE_MARGIN = 10.0
"""Points by which rsn2's class-incremental ACC must lead EWC's and fine-tuning's on Split-CIFAR-10
("by a wide margin": this project's reading)."""


def task_inference_section(bench: str, results: dict[str, Any]) -> list[str]:
    """The README lines of a benchmark's class-incremental evaluation (methods that recorded one)."""
    rows = {m: e["task_inference"] for m, e in results["methods"].items() if e.get("task_inference")}
    if not rows:
        return []
    lines = [
        "",
        "Task inference without the task name (class-incremental evaluation after the last stage): the task "
        "of each test sample, or of each batch of 16 or 128 test samples of one task, is the one whose head's "
        "output has the lowest normalized entropy (`entropy`), or SupSup's one-shot gradient over the "
        "superposition of every task (`one-shot`, per batch only, on the first 2048 test samples of each task). "
        "Task id: answers naming the right task; class-incremental: right task and right class.",
        "",
        "| method | rule | task id, 1 | task id, 16 | task id, 128 | class-incr., 1 | class-incr., 16 "
        "| class-incr., 128 | µs per sample |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m, report in rows.items():
        for rule in ("entropy", "one-shot"):
            r = report.get(rule)
            if r is None:
                continue
            ids = [_cell(r["task_id"].get(b)) for b in ("1", "16", "128")]
            cil = [_cell(r["class_incremental"].get(b)) for b in ("1", "16", "128")]
            us = _cell(r["microseconds_per_sample"], 1)
            lines.append(f"| {m} | {rule} | {' | '.join(ids)} | {' | '.join(cil)} | {us} |")
    thresholds = rows.get("rsn2", {}).get("thresholds")
    if thresholds:
        cells = [
            f"{t}: {_cell(v['answered'], 1)} answered, {_cell(v['task_id_answered'], 2)} right"
            for t, v in thresholds["at"].items()
            if v["answered"] is not None
        ]
        lines += [
            "",
            f"rsn2 per sample at confidence thresholds (serving default {thresholds['default']}): "
            + "; ".join(cells)
            + ".",
        ]
    goals = []
    target_of = next((t for t in TASK_ID_TARGETS if bench == t or bench.startswith(t + "-")), None)
    if target_of is not None and "rsn2" in rows:
        batch, bar = TASK_ID_TARGETS[target_of]
        got = rows["rsn2"]["entropy"]["task_id"][batch]["mean"]
        goals.append(
            f"Task identification at least {bar:.0f}% per batch of {batch} (rsn2, entropy): "
            f"{'met' if got >= bar else 'MISSED'} ({got:.2f})"
        )
    cil_of = next((t for t in CLASS_INCREMENTAL_TARGETS if bench == t or bench.startswith(t + "-")), None)
    if cil_of is not None and "rsn2" in rows:
        bar = CLASS_INCREMENTAL_TARGETS[cil_of]
        got = rows["rsn2"]["entropy"]["class_incremental"]["1"]["mean"]
        goals.append(
            f"Class-incremental ACC at least {bar:.0f}% per sample without old data (rsn2, entropy): "
            f"{'met' if got >= bar else 'MISSED'} ({got:.2f})"
        )
    if bench.startswith("split-cifar10") and "rsn2" in rows:
        got = rows["rsn2"]["entropy"]["class_incremental"]["1"]["mean"]
        others = {m: rows[m]["entropy"]["class_incremental"]["1"]["mean"] for m in ("ewc", "finetune") if m in rows}
        if others:
            best = max(others.values())
            goals.append(
                f"Class-incremental ACC per sample at least {WIDE_MARGIN:.0f} points above EWC's and fine-tuning's "
                f"(rsn2, entropy): {'met' if got >= best + WIDE_MARGIN else 'MISSED'} ({got:.2f} vs {best:.2f})"
            )
    if goals:
        lines += ["", "Task-inference targets:", "", *[f"- {g}" for g in goals]]
    return lines


def format_readme(all_results: dict[str, dict[str, Any]], command: str, folder: Path | None = None) -> str:
    """The README: one table per benchmark (ours, 3 seeds, beside the published figures) and the targets."""
    lines = [
        "# Continual learning: rsn2 beside its baselines and the published figures",
        "",
        f"Generated by `{command}` from the `results.json` in each benchmark folder, which `rsn2 cl run "
        "<benchmark file> --out <that folder> --seeds <n>` wrote (benchmark files: `benchmarks/cl/`). "
        "Accuracies are test accuracies in percent, mean ± std over seeds. Every task is trained in its "
        "own stage with its own head (task-incremental). ACC: mean accuracy after the last stage. BWT: "
        "mean change of earlier tasks since their own stage (0 = no forgetting). Forgetting: best minus "
        "final. LA: accuracy right after each task's stage. Worst task: the lowest final accuracy of a task "
        "(mean over seeds). Capacity: WSN's measure, the bits of the weights any task uses and of the masks "
        "(owner maps, read sets) over one dense model's weights (subnetwork methods). "
        "Joint training has one stage, so only ACC. "
        "Published: the figure of the source named under the table, same benchmark and network, not "
        "rerun here. Train s: wall seconds of training (evaluation excluded) on the CPU each run file "
        "names, with other jobs beside it on the machine: a rough cost, not a timing benchmark.",
        "",
    ]
    for bench, results in all_results.items():
        b = results["benchmark"]
        t = b["training"]
        lines += [
            f"## {b['title']} (`{bench}`)",
            "",
            f"Network {_network_text(b['network'])}; "
            f"rsn2 and PackNet keep {b['keep_fraction']:.0%} of every trunk layer per task; every method trains "
            f"{t['epochs']} epochs per task at batch {t['batch_size']} ({t['optimizer']}, lr {t['lr']}), keeping "
            f"the epoch with the lowest loss on {t['val_fraction']:.0%} of the task's training data.",
            "",
            "| method | ACC | BWT | forgetting | LA | worst task | capacity | seeds | train s (all tasks) "
            "| published ACC |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        published = results["published"]["acc"]
        for m in [
            *(m for m in METHODS if m in results["methods"]),
            *(m for m in published if m not in results["methods"]),
        ]:
            e = results["methods"].get(m)
            pub = f"{published[m]:.2f}" if m in published else "-"
            if e is None:
                lines.append(f"| {m} (not run here) | - | - | - | - | - | - | - | - | {pub} |")
                continue
            worst = f"{min(e['final_mean']):.2f}" if e.get("final_mean") else "-"
            lines.append(
                f"| {m} | {_cell(e['ACC'])} | {_cell(e['BWT'])} | {_cell(e['forgetting'])} | {_cell(e['LA'])} | "
                f"{worst} | {_cell(e.get('capacity'), 3)} | {e['seeds']} | {_cell(e['train_seconds'], 0)} | {pub} |"
            )
        if results["published"]["source"]:
            lines += ["", f"Published: {results['published']['source']}."]
        goals = targets(bench, results)
        if goals:
            lines += ["", "Targets for rsn2:", "", *[f"- {g}" for g in goals]]
        lines += task_inference_section(bench, results)
        lines += ["", f"![accuracy after every stage]({bench}/accuracy.png)", ""]
    lines += capacity_section(folder) if folder is not None else []
    return "\n".join(lines)


def write_summary(folder: Path, command: str | None = None) -> list[Path]:
    """Write ``folder/results.json`` and ``folder/README.md``; returns their paths. ``command``: what the
    README says generated it (default ``rsn2 cl summary <folder>``)."""
    command = command or f"rsn2 cl summary {folder}"
    all_results = collect(folder)
    if not all_results:
        raise ResultsFolderError(f"no benchmark results (<name>/results.json of a full run) in {folder}")
    json_path, readme = folder / "results.json", folder / "README.md"
    atomic_write_bytes(json_path, json.dumps(combined(all_results), indent=1).encode())
    atomic_write_bytes(readme, format_readme(all_results, command, folder).encode())
    return [json_path, readme]


def _network_text(network: dict[str, Any]) -> str:
    """``mlp [100, 100]``, ``conv-a``, or the user's module as the benchmark names it."""
    if "module" in network:
        return f"`{network['module']}` (the user's module{', flat inputs' if network.get('flatten') else ''})"
    return f"{network['kind']}{' ' + str(network['hidden']) if network['hidden'] else ''}"
