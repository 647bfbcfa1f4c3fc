"""The demo: three unrelated scikit-learn tasks in one network, with dense controls alongside.

digits (8x8 images, 10 classes) and wine (13 features, 3 classes) are selected and trained together;
diabetes (10 features, regression) is added as a later stage. Needs no download.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_diabetes, load_digits, load_wine
from sklearn.model_selection import train_test_split
from torch import Tensor

from rsn2.io import save_model
from rsn2.network import MultitaskNetwork, NetworkSpec, TaskSpec, linear, relu
from rsn2.network.dense_control import dense_control
from rsn2.selection import owner_maps, ownership_problems
from rsn2.training import METRIC_NAMES, TaskData, TrainConfig, evaluate, fit_stage, predict

KEEP_FRACTION = 0.3
WIDTH = 256


@dataclass
class DemoTask:
    """One demo task's scaled train and test tensors."""

    spec: TaskSpec
    train: TaskData
    x_test: Tensor
    y_test: Tensor


def _minmax(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = train.min(axis=0), train.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (train - lo) / span, (test - lo) / span


def demo_tasks(seed: int) -> list[DemoTask]:
    """digits, wine and diabetes, split 80/20 with ``seed``; features (and the regression target)
    min-max scaled with training statistics only; digits pixels divided by 16 (their maximum)."""
    tasks: list[tuple[Any, ...]] = []
    digits, wine, diabetes = load_digits(), load_wine(), load_diabetes()
    xtr, xte, ytr, yte = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.2, random_state=seed, stratify=digits.target
    )
    tasks.append(("digits", "classification", xtr, xte, ytr, yte, (), [str(c) for c in digits.target_names]))
    xtr, xte, ytr, yte = train_test_split(
        wine.data, wine.target, test_size=0.2, random_state=seed, stratify=wine.target
    )
    xtr, xte = _minmax(xtr, xte)
    tasks.append(("wine", "classification", xtr, xte, ytr, yte, (linear(13, 64), relu()), list(wine.target_names)))
    xtr, xte, ytr, yte = train_test_split(diabetes.data, diabetes.target, test_size=0.2, random_state=seed)
    xtr, xte = _minmax(xtr, xte)
    ytr2, yte2 = _minmax(ytr[:, None], yte[:, None])
    tasks.append(("diabetes", "regression", xtr, xte, ytr2[:, 0], yte2[:, 0], (linear(10, 64), relu()), None))
    out = []
    for name, kind, xtr, xte, ytr, yte, adapter, classes in tasks:
        ydtype = torch.long if kind == "classification" else torch.float32
        outputs = len(classes) if classes is not None else 1
        head = [linear(WIDTH, outputs)]
        spec = TaskSpec(
            name, kind, (xtr.shape[1],), head=head, adapter=adapter, keep_fraction=KEEP_FRACTION, classes=classes
        )
        out.append(
            DemoTask(
                spec,
                TaskData(torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr, dtype=ydtype)),
                torch.tensor(xte, dtype=torch.float32),
                torch.tensor(yte, dtype=ydtype),
            )
        )
    return out


def demo_spec(tasks: list[DemoTask]) -> NetworkSpec:
    """Trunk 64 -> 256 -> 256 -> 256 (ReLU); wine and diabetes enter through their own 64-wide adapter."""
    trunk = (linear(64, WIDTH), relu(), linear(WIDTH, WIDTH), relu(), linear(WIDTH, WIDTH), relu())
    return NetworkSpec(trunk, tuple(t.spec for t in tasks))


def demo_config(seed: int, progress: bool | str) -> TrainConfig:
    """Paper settings (Adam 1e-3, 10% validation, best weights restored) at a batch size and patience
    that suit these small datasets."""
    return TrainConfig(batch_size=32, max_epochs=150, patience=10, min_delta=1e-3, seed=seed, progress=progress)


def run_demo(seed: int = 0, save: str | Path | None = None, progress: bool | str = False) -> dict[str, Any]:
    """Train the demo and its controls; returns the JSON-ready report (schema in the README)."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    tasks = demo_tasks(seed)
    by_name = {t.spec.name: t for t in tasks}
    spec = demo_spec(tasks)
    config = demo_config(seed, progress)
    network = MultitaskNetwork(spec)
    early, later = ["digits", "wine"], ["diabetes"]

    fit_stage(network, {n: by_name[n].train for n in early}, config)
    before = {n: evaluate(network, n, by_name[n].x_test, by_name[n].y_test)["metric"] for n in early}
    outputs_before = {n: predict(network, n, by_name[n].x_test) for n in early}
    owners_before = owner_maps(network)
    fit_stage(network, {n: by_name[n].train for n in later}, config)
    after = {n: evaluate(network, n, by_name[n].x_test, by_name[n].y_test)["metric"] for n in early}
    unchanged = all(torch.equal(outputs_before[n], predict(network, n, by_name[n].x_test)) for n in early)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        control_bytes = {}
        controls = {}
        for t in tasks:
            torch.manual_seed(seed)
            control = dense_control(spec, t.spec.name)
            fit_stage(control, {t.spec.name: t.train}, config)
            controls[t.spec.name] = evaluate(control, t.spec.name, t.x_test, t.y_test)["metric"]
            control_bytes[t.spec.name] = save_model(control, Path(tmp) / f"control-{t.spec.name}.safetensors")
        model_path = Path(save) if save is not None else Path(tmp) / "demo.safetensors"
        model_bytes = save_model(network, model_path, user={"demo_seed": seed})
    for t in tasks:
        n = t.spec.name
        rows.append(
            {
                "name": n,
                "metric": METRIC_NAMES[t.spec.kind],
                "multitask": evaluate(network, n, t.x_test, t.y_test)["metric"],
                "control": controls[n],
                "before_later_stages": before.get(n),
                "after_later_stages": after.get(n),
                "kept_fraction": network.kept_fraction(n),
            }
        )
    return {
        "seed": seed,
        "stages": [early, later],
        "tasks": rows,
        "model_bytes": model_bytes,
        "dense_model_bytes": control_bytes["digits"],
        "controls_bytes": sum(control_bytes.values()),
        "ownership_problems": ownership_problems(network, owners_before),
        "earlier_tasks_unchanged": unchanged,
        "seconds": round(time.perf_counter() - start, 2),
        "saved_to": str(save) if save is not None else None,
    }


def format_report(report: dict[str, Any]) -> str:
    """The demo report as a plain-text table."""
    head = f"{'task':<10} {'metric':<9} {'multitask':>9} {'control':>9} {'before':>9} {'after':>9} {'kept':>6}"
    lines = [
        f"rsn2 demo (seed {report['seed']}): stage 1 = {' + '.join(report['stages'][0])}, "
        f"stage 2 = {' + '.join(report['stages'][1])}",
        "",
        head,
        "-" * len(head),
    ]

    def cell(v: float | None) -> str:
        return f"{v:9.4f}" if v is not None else f"{'-':>9}"

    for r in report["tasks"]:
        lines.append(
            f"{r['name']:<10} {r['metric']:<9} {cell(r['multitask'])} {cell(r['control'])} "
            f"{cell(r['before_later_stages'])} {cell(r['after_later_stages'])} {r['kept_fraction']:6.1%}"
        )
    lines += [
        "",
        "before/after: test metric of the earlier tasks before and after the later stage trained.",
        f"earlier tasks' outputs bit-identical after the later stage: {report['earlier_tasks_unchanged']}",
        f"ownership as selected, no position changed hands: {not report['ownership_problems']}",
        f"model file: {report['model_bytes']:,} bytes; one dense model: {report['dense_model_bytes']:,} bytes "
        f"({report['model_bytes'] / report['dense_model_bytes']:.2f}x); the {len(report['tasks'])} dense controls: "
        f"{report['controls_bytes']:,} bytes",
        f"time: {report['seconds']:.1f} s",
    ]
    if report.get("saved_to"):
        lines.append(f"saved: {report['saved_to']}")
    return "\n".join(lines)
