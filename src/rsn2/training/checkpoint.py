"""Epoch checkpoints of a training stage, so that a long stage can span several sessions.

One rsn2 container file (:mod:`rsn2.io.container`: safetensors plus a JSON header), written
atomically after every epoch (a reader sees the previous checkpoint or the complete new one).
Tensors: the stage's parameters now (``param.<i>``) and at the best epoch (``best.<i>``), the
optimizer's per-parameter state (``optimizer.<i>.<key>``) and the batch-order generator
(``generator``). The JSON header holds the format, the stage's identity (tasks, training settings,
a digest of the trainable positions), the epochs done, the history, the early-stopping state of
every stopping group and the training seconds so far. Nothing is unpickled.

A checkpoint only resumes the stage that wrote it: :func:`load_stage_checkpoint` refuses one whose
identity differs, and restores only the trainable entries of each parameter, so frozen subnetworks
stay bit-identical whatever the file holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from rsn2.errors import CheckpointError
from rsn2.io.container import Container, write_container
from rsn2.training.early_stopping import EarlyStopping

FORMAT = "rsn2-stage-checkpoint"
FORMAT_VERSION = 2  # 2: one early-stopping state per stopping group


@dataclass
class StageProgress:
    """Where a stage's training stands after ``epochs_done`` epochs.

    ``params`` and ``best_params`` are aligned with the stage's parameter list (same shapes);
    ``generator`` is the batch-order generator's state (uint8); ``stoppers`` the early-stopping
    state of each stopping group, by group key; ``seconds`` the training time so far.
    """

    epochs_done: int
    params: list[Tensor]
    best_params: list[Tensor]
    generator: Tensor
    stoppers: dict[str, EarlyStopping]
    history: list[dict[str, Any]]
    seconds: float


def stage_identity(tasks: list[str], settings: dict[str, Any], masks: list[Tensor | bool]) -> dict[str, Any]:
    """What a checkpoint must match to resume a stage: its tasks, training settings and trainable positions.

    ``masks`` is aligned with the stage's parameters (see :func:`rsn2.training.trainable_masks`).
    """
    digest = hashlib.sha256()
    for m in masks:
        if isinstance(m, bool):
            digest.update(b"all" if m else b"none")
        else:
            digest.update(str(tuple(m.shape)).encode())
            digest.update(m.detach().to("cpu", torch.uint8).contiguous().numpy().tobytes())
    return {"tasks": list(tasks), "settings": settings, "trainable": digest.hexdigest()}


def save_stage_checkpoint(
    path: str | os.PathLike[str], identity: dict[str, Any], progress: StageProgress, optimizer: Optimizer
) -> None:
    """Write ``progress`` and ``optimizer``'s state to ``path`` atomically."""
    tensors: dict[str, Tensor] = {"generator": progress.generator.detach().cpu().contiguous()}
    for i, (p, b) in enumerate(zip(progress.params, progress.best_params, strict=True)):
        tensors[f"param.{i}"] = p.detach().cpu().contiguous()
        tensors[f"best.{i}"] = b.detach().cpu().contiguous()
    scalars: dict[str, dict[str, Any]] = {}
    for i, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{i}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(i), {})[key] = value
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "identity": identity,
        "epochs_done": progress.epochs_done,
        "history": progress.history,
        "stoppers": {
            key: {"best": s.best, "best_epoch": s.best_epoch, "since_best": s.since_best}
            for key, s in progress.stoppers.items()
        },
        "optimizer_scalars": scalars,
        "seconds": progress.seconds,
    }
    write_container(path, tensors, meta, CheckpointError)


def load_stage_checkpoint(
    path: str | os.PathLike[str],
    identity: dict[str, Any],
    params: list[Tensor],
    masks: list[Tensor | bool],
    optimizer: Optimizer,
    stopper_keys: list[str],
) -> StageProgress:
    """Restore the stage checkpoint at ``path`` into ``params`` (trainable entries only) and ``optimizer``.

    ``params`` and ``masks`` are the stage's parameters (then the running statistics of its batch
    norms) and trainable masks, aligned; ``optimizer`` is
    the stage's freshly built optimizer (its hyperparameters stay; only per-parameter state is loaded);
    ``stopper_keys`` the stage's stopping groups (see :func:`rsn2.training.early_stopping.stopping_groups`).

    Raises:
        CheckpointError: unreadable file, another format, or written for another stage (tasks,
            settings or trainable positions differ); nothing has been changed then.
    """
    where = f"stage checkpoint {path}"
    hint = "delete it to start the stage over"
    with Container(path, FORMAT, FORMAT_VERSION, CheckpointError, what="rsn2 stage checkpoint", hint=hint) as f:
        meta = f.header
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("identity") != identity:
        differ = [k for k in identity if meta.get("identity", {}).get(k) != identity[k]]
        raise CheckpointError(
            f"{where} belongs to another stage or run ({', '.join(differ) or 'identity'} differ); delete it to "
            "start the stage over, or resume with the settings that wrote it"
        )

    def tensor(name: str, like: Tensor) -> Tensor:
        t = tensors.get(name)
        if t is None or t.shape != like.shape or t.dtype != like.dtype:
            got = "missing" if t is None else f"{t.dtype} {tuple(t.shape)}"
            raise CheckpointError(f"{where}: tensor {name!r} is {got}, expected {like.dtype} {tuple(like.shape)}")
        return t.to(like.device)

    saved = [tensor(f"param.{i}", p) for i, p in enumerate(params)]
    best = [tensor(f"best.{i}", p) for i, p in enumerate(params)]
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = t
    for i, extra in meta.get("optimizer_scalars", {}).items():
        state.setdefault(int(i), {}).update(extra)
    # optimizer state is indexed in the optimizer's own order (its param groups, one per learning-rate
    # factor with rescale_lr), which need not be the stage's parameter order that ``masks`` follows
    position = {id(p): j for j, p in enumerate(params)}
    in_optimizer = [position.get(id(p), -1) for group in optimizer.param_groups for p in group["params"]]
    for i, entries in state.items():
        if not 0 <= i < len(in_optimizer) or in_optimizer[i] < 0:
            raise CheckpointError(f"{where}: optimizer state for parameter {i}, the stage has {len(params)}")
        m = masks[in_optimizer[i]]
        for key, t in entries.items():  # moments must be zero where nothing may train (IsolationGuard)
            if isinstance(t, Tensor) and not isinstance(m, bool) and t.shape == m.shape and bool(t[~m.cpu()].any()):
                raise CheckpointError(f"{where}: optimizer state {key!r} of parameter {i} is non-zero where frozen")
    try:
        settings, saved_stoppers = meta["identity"]["settings"], meta["stoppers"]
        if sorted(saved_stoppers) != sorted(stopper_keys):
            raise CheckpointError(
                f"{where}: early-stopping groups {sorted(saved_stoppers)}, the stage has {sorted(stopper_keys)}"
            )
        stoppers = {}
        for key in stopper_keys:
            stop = saved_stoppers[key]
            stopper = EarlyStopping(
                int(settings["patience"]), float(settings["min_delta"]), str(settings.get("min_delta_mode", "abs"))
            )
            stopper.best, stopper.best_epoch = float(stop["best"]), int(stop["best_epoch"])
            stopper.since_best = int(stop["since_best"])
            stoppers[key] = stopper
        epochs_done, seconds = int(meta["epochs_done"]), float(meta.get("seconds", 0.0))
        history = list(meta["history"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: malformed metadata ({exc!r}); delete it to start the stage over") from None
    generator = tensors.get("generator")
    if generator is None or generator.dtype != torch.uint8:
        raise CheckpointError(f"{where}: the batch-order generator state is missing or not uint8")
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    with torch.no_grad():  # trainable entries from the file; frozen ones stay as they are
        for p, s, b, m in zip(params, saved, best, masks, strict=True):
            if isinstance(m, bool):
                if not m:
                    s.copy_(p)
                    b.copy_(p)
            else:
                torch.where(m, s, p, out=s)
                torch.where(m, b, p, out=b)
            p.copy_(s)
    return StageProgress(epochs_done, saved, best, generator, stoppers, history, seconds)


ADDED_LATER = {"negatives": 0.0}
"""TrainConfig fields added after runs were recorded, with their off values: recorded only when set,
so that a run recorded before a field existed keeps its identity (and resumes)."""


def settings_of(config: Any) -> dict[str, Any]:
    """The training settings a checkpoint records: every field of a TrainConfig but ``progress`` (and
    those of :data:`ADDED_LATER` at their off values)."""
    return {
        k: v
        for k, v in dataclasses.asdict(config).items()
        if k != "progress" and not (k in ADDED_LATER and v == ADDED_LATER[k])
    }
