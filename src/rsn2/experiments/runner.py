"""Running an experiment: multitask model and dense controls per seed, then results, report, figures.

Every finished seed is written to ``DIR/seeds/seed<N>.json`` (atomically) before the next starts, so
an interrupted run keeps what finished and a rerun with the same ``--out`` picks up where it stopped.
Within a seed, ``DIR/checkpoints/seed<N>/`` keeps every finished stage and dense control as a model
file and the stage in progress as an epoch checkpoint (:mod:`rsn2.training.checkpoint`), so a rerun
resumes after the last finished epoch; the folder is removed once the seed is written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import precision_recall_fscore_support

from rsn2.devices import describe as describe_device
from rsn2.devices import resolve_device
from rsn2.errors import ResultsFolderError
from rsn2.experiments.build import build_control, build_network, build_spec, fresh_module
from rsn2.experiments.config import ExperimentConfig
from rsn2.experiments.load_tasks import ExperimentTask, load_datasets
from rsn2.experiments.run_folder import claim, run_identity
from rsn2.io import atomic_write_bytes, load_model, read_metadata, save_model
from rsn2.network import MultitaskNetwork, NetworkSpec
from rsn2.training import METRIC_NAMES, TrainConfig, distributed, evaluate, fit_stage, predict
from rsn2.training.checkpoint import settings_of
from rsn2.training.precision import resolve_precision

SMOKE_TRAINING = {"max_epochs": 1, "batch_size": 64}


def run_seed(
    config: ExperimentConfig,
    data: dict[str, ExperimentTask],
    seed: int,
    train: TrainConfig,
    model_path: Path | None,
    device: torch.device | None = None,
    checkpoints: Path | None = None,
) -> dict[str, Any]:
    """Train and evaluate the multitask model and every dense control for one seed on ``device``.

    Models are initialised on the CPU from ``seed`` and then moved, so a seed starts from the same
    weights on every device. With ``checkpoints`` (a folder), finished stages and controls are kept
    there and the training in progress is checkpointed after every epoch; a later call with the same
    folder resumes. ``seconds`` sums the time of every call that contributed (work lost to an
    interruption after the last checkpoint is not counted).
    """
    start = time.perf_counter()
    carried = 0.0  # seconds spent by earlier, interrupted calls on what this call resumes
    resumed = False
    device = device or torch.device("cpu")
    spec = build_spec(config)
    torch.manual_seed(seed)
    net = build_network(config, spec).to(device)
    stage_losses: list[dict[str, float]] = []
    for k, stage in enumerate(config.stages):
        finished = checkpoints / f"stage{k}.safetensors" if checkpoints else None
        if finished is not None and finished.is_file():
            net, user = _load_finished(finished, device, config)
            stage_losses = user["stage_losses"]
            carried += user["seconds"]
            resumed = True
            continue
        in_progress = checkpoints / f"stage{k}.epochs.safetensors" if checkpoints else None
        stage_data = {t: data[t].train for t in stage}
        result = fit_stage(net, stage_data, train, selection=config.selection_config(), checkpoint=in_progress)
        trained = [t for s in config.stages[: k + 1] for t in s]
        stage_losses.append({t: evaluate(net, t, data[t].x_test, data[t].y_test)["loss"] for t in trained})
        carried += result.earlier_seconds
        resumed = resumed or result.resumed
        if finished is not None and in_progress is not None and distributed.is_writer():
            _keep_finished(net, finished, in_progress, {"stage_losses": stage_losses, "seconds": result.seconds})
    tasks: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        target = model_path if model_path is not None and distributed.is_writer() else Path(tmp) / "model.safetensors"
        model_bytes = save_model(net, target, user={"seed": seed})
        control_bytes = 0
        controls: dict[tuple[str, int | None, str], tuple[MultitaskNetwork, str, int]] = {}
        for task in config.tasks:
            d = data[task.name]
            kind = spec.task(task.name).kind
            key = control_key(config, spec, task.name)
            if key not in controls:  # tasks on the same data with the same head share one control
                finished = checkpoints / f"control-{task.name}.safetensors" if checkpoints else None
                if finished is not None and finished.is_file():
                    control, user = _load_finished(finished, device, config)
                    carried += user["seconds"]
                    resumed = True
                else:
                    torch.manual_seed(seed)
                    control = build_control(config, spec, task.name).to(device)
                    in_progress = checkpoints / f"control-{task.name}.epochs.safetensors" if checkpoints else None
                    result = fit_stage(control, {task.name: d.train}, train, checkpoint=in_progress)
                    carried += result.earlier_seconds
                    resumed = resumed or result.resumed
                    if finished is not None and in_progress is not None and distributed.is_writer():
                        _keep_finished(control, finished, in_progress, {"seconds": result.seconds})
                controls[key] = (control, task.name, save_model(control, Path(tmp) / f"{task.name}.safetensors"))
            control, trained_as, nbytes = controls[key]
            control_bytes += nbytes  # one dense model per task is what the multitask model replaces
            tasks[task.name] = {
                "metric": METRIC_NAMES[kind],
                "multitask": evaluate(net, task.name, d.x_test, d.y_test)["metric"],
                "control": evaluate(control, trained_as, d.x_test, d.y_test)["metric"],
                "control_trained_as": trained_as,
                "kept_fraction": net.kept_fraction(task.name),
                "per_class": per_class(net, task.name, d) if kind == "classification" else None,
                "control_per_class": per_class(control, trained_as, d) if kind == "classification" else None,
            }
    for name, members in config.ensembles.items():
        d = data[members[0]]
        probs = net.ensemble(d.x_test.to(device), list(members)).cpu()
        tasks[name] = {
            "metric": "accuracy",
            "multitask": float((probs.argmax(1) == d.y_test).float().mean()),
            "control": tasks[members[0]]["control"],
            "kept_fraction": None,
            "per_class": None,
            "members": list(members),
        }
    return {
        "seed": seed,
        "tasks": tasks,
        "stage_losses": stage_losses,
        "model_bytes": model_bytes,
        "controls_bytes": control_bytes,
        "seconds": round(time.perf_counter() - start + carried, 2),
        "resumed": resumed,
    }


def _keep_finished(net: MultitaskNetwork, finished: Path, in_progress: Path, user: dict[str, Any]) -> None:
    """Save a finished stage's (or control's) model, then drop its epoch checkpoint."""
    save_model(net, finished, user=user)
    in_progress.unlink(missing_ok=True)


def _load_finished(
    path: Path, device: torch.device, config: ExperimentConfig
) -> tuple[MultitaskNetwork, dict[str, Any]]:
    """A finished stage's (or control's) model, moved to ``device``, and what was saved with it."""
    body = fresh_module(config) if config.module is not None else None
    return load_model(path, body=body).to(device), read_metadata(path)["user"]


def control_key(config: ExperimentConfig, spec: NetworkSpec, task: str) -> tuple[str, int | None, str]:
    """What makes two tasks' dense controls the same model: dataset, batch size and task layers.

    Experiment 1's five Fashion-MNIST tasks get one control (the paper's single 92%), not five
    identical trainings; tasks on different labels of one dataset (UTKFace age/gender/race) do not.
    """
    t = config.task(task)
    layers = dataclasses.replace(spec.task(task), name="control", keep_fraction=1.0).to_dict()
    return (t.dataset, t.batch_size, json.dumps(layers, sort_keys=True))


def per_class(net: MultitaskNetwork, task: str, d: ExperimentTask) -> dict[str, list[float]]:
    """Per-class precision, recall and F1 on the test set (the paper's Tables 11-13)."""
    pred = predict(net, task, d.x_test).argmax(1).numpy()
    labels = np.arange(net.task_spec(task).head[-1].params["out_features"])
    p, r, f, _ = precision_recall_fscore_support(d.y_test.numpy(), pred, labels=labels, zero_division=0)
    return {
        "classes": d.classes or [str(i) for i in labels],
        "precision": p.tolist(),
        "recall": r.tolist(),
        "f1": f.tolist(),
    }


def run_experiment(
    config: ExperimentConfig,
    out: Path,
    seeds: int = 1,
    data_dir: str | os.PathLike[str] | None = None,
    smoke: bool = False,
    progress: bool | str = False,
    command: str = "",
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Run (or resume) ``seeds`` seeds of ``config`` into ``out`` on ``device`` (see
    :func:`rsn2.devices.resolve_device`); writes results.json, report.md, figures/."""
    from rsn2.experiments.report import write_figures, write_report

    target = resolve_device(device)
    train = config.train_config(progress=progress, **(SMOKE_TRAINING if smoke else {}))
    layers = fresh_module(config) if config.module is not None else build_spec(config)
    precision = resolve_precision(train.precision, target, layers)  # what each stage trains in
    identity = run_identity(config, smoke, settings_of(train), precision)
    refused = None  # another run's folder is refused before any data is read or file written
    if distributed.is_writer():
        try:
            claim(out, identity)
        except ResultsFolderError as exc:
            refused = str(exc)
    refused = distributed.broadcast(refused)  # every rank stops, not rank 0 alone
    if refused is not None:
        raise ResultsFolderError(refused)
    (out / "seeds").mkdir(parents=True, exist_ok=True)
    data = load_datasets(config, data_dir, smoke)
    runs = []
    for seed in range(seeds):
        path = out / "seeds" / f"seed{seed}.json"
        if path.is_file():
            runs.append(json.loads(path.read_text()))
            continue
        model_path = out / "model.safetensors" if seed == 0 else None
        checkpoints = out / "checkpoints" / f"seed{seed}"
        checkpoints.mkdir(parents=True, exist_ok=True)
        result = run_seed(config, data, seed, train, model_path, target, checkpoints)
        result["device"] = describe_device(target)
        result["precision"] = precision
        ranks = distributed.active()
        result["processes"] = 1 if ranks is None else ranks.world_size
        if distributed.is_writer():
            atomic_write_bytes(path, json.dumps(result, indent=1).encode())
            shutil.rmtree(checkpoints)
            if not any((out / "checkpoints").iterdir()):
                (out / "checkpoints").rmdir()
        distributed.barrier()  # no rank starts the next seed while rank 0 is still writing this one
        if distributed.is_writer():
            summary = ", ".join(f"{t} {r['multitask']:.4f}/{r['control']:.4f}" for t, r in result["tasks"].items())
            print(
                f"[{config.name}] seed {seed} done in {result['seconds']:.0f} s (multitask/control): {summary}",
                file=sys.stderr,
                flush=True,
            )
        runs.append(result)
    results = aggregate(config, runs, data, smoke=smoke, command=command)
    results["selection"] = config.selection_config().to_dict()  # what this code's defaults and the file gave
    results["training"] = {**settings_of(train), "rescale_lr": train.rescale_lr is not False}  # None: on
    if distributed.is_writer():
        atomic_write_bytes(out / "results.json", json.dumps(results, indent=1).encode())
        write_figures(results, out / "figures")
        write_report(results, out / "report.md")
    distributed.barrier()
    return results


def aggregate(
    config: ExperimentConfig, runs: list[dict[str, Any]], data: dict[str, ExperimentTask], smoke: bool, command: str
) -> dict[str, Any]:
    """Means and standard deviations over seeds, next to the paper's figures."""
    tasks = {}
    for name in runs[0]["tasks"]:
        per_seed = [r["tasks"][name] for r in runs]
        row: dict[str, Any] = {
            "metric": per_seed[0]["metric"],
            "paper": config.paper.get(name, {}),
            "kept_fraction": per_seed[0]["kept_fraction"],
        }
        for which in ("multitask", "control"):
            values = [s[which] for s in per_seed]
            row[which] = {"values": values, "mean": float(np.mean(values)), "std": float(np.std(values))}
        row["per_class"] = per_seed[0].get("per_class")
        row["control_per_class"] = per_seed[0].get("control_per_class")
        row["control_trained_as"] = per_seed[0].get("control_trained_as", name)
        tasks[name] = row
    return {
        "experiment": config.name,
        "title": config.title,
        "architecture": config.network_name,
        "stages": [list(s) for s in config.stages],
        "seeds": len(runs),
        "smoke": smoke,
        "tasks": tasks,
        "stage_losses": [r["stage_losses"] for r in runs],
        "model_bytes": runs[0]["model_bytes"],
        "controls_bytes": runs[0]["controls_bytes"],
        "wall_seconds": round(sum(r["seconds"] for r in runs), 1),
        "device": "; ".join(sorted({r.get("device", "not recorded") for r in runs})),
        "precision": "; ".join(sorted({r.get("precision", "fp32") for r in runs})),
        "processes": max(int(r.get("processes", 1)) for r in runs),
        "data_notes": {t: d.notes for t, d in data.items() if d.notes},
        "command": command,
    }
