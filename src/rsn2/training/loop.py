"""Training a stage: several tasks trained together, their subnetworks frozen afterwards."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from tqdm.auto import tqdm

from rsn2.devices import module_device
from rsn2.errors import FrozenSubnetworkError, SpecError, TaskError, TrainingError
from rsn2.network.model import MultitaskNetwork
from rsn2.network.task_kinds import task_kind
from rsn2.selection import SelectionConfig, SelectionReport, fan_in_scale, select_subnetworks
from rsn2.training import distributed
from rsn2.training.checkpoint import (
    StageProgress,
    load_stage_checkpoint,
    save_stage_checkpoint,
    settings_of,
    stage_identity,
)
from rsn2.training.early_stopping import MIN_DELTA_MODES, STOPPING_SCOPES, EarlyStopping, stopping_groups
from rsn2.training.evaluation import evaluate
from rsn2.training.isolation import IsolationGuard, stage_parameters, trainable_masks
from rsn2.training.negatives import image_shape, make_negatives, uniform_target_loss
from rsn2.training.precision import (
    MEMORY_FORMATS,
    PRECISIONS,
    Precision,
    autocast,
    channels_last,
    match_state_layout,
    resolve_channels_last,
    resolve_precision,
)
from rsn2.training.task_data import TaskData, check_task_data, validation_split

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass
class TrainConfig:
    """Training settings of a stage (defaults: docs/method.md, "Training settings").

    Attributes:
        batch_size: samples per task per step (a task's ``TaskData.batch_size`` overrides it).
        max_epochs: upper bound on epochs; early stopping usually ends sooner.
        patience / min_delta / min_delta_mode: early stopping on a summed validation loss;
            ``min_delta_mode`` ``"abs"`` (the paper's) or ``"rel"`` (``min_delta`` a fraction of the
            best loss), see :class:`~rsn2.training.early_stopping.EarlyStopping`.
        early_stopping: ``"task"`` (the default: each group of tasks that share a subnetwork, usually
            one task, stops on its own validation loss and keeps its own best epoch while the others
            train on; see :func:`train_stage`) or ``"stage"`` (the paper's: one stopper on the summed
            validation loss of all the stage's tasks, one best epoch for all).
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (momentum 0.9); ``lr`` and ``weight_decay`` apply.
        val_fraction: validation share split off each task's training data, fixed by ``seed``.
        seed: seeds the split and the batch order.
        progress: ``True``: a progress bar with per-task loss and a line per epoch (on stderr);
            ``"lines"``: the lines only (for logs, when stderr is not a terminal); ``False``: nothing.
        rescale_lr: pruned kernels learn at ``lr / sqrt(f)``, ``f`` the fraction of the layer their
            subnetwork keeps: the factor the selection's rescaling gives their weights, so that a
            step moves a subnetwork as far, relative to its weights, as it moves a dense model (the
            mean factor where a stage's subnetworks keep different fractions of one layer). Dense
            layers, biases and task modules keep ``lr``. ``None`` (the default) is on for the
            optimizer this config makes and off when a stage is given an ``optimizer_factory``
            (which sets its own learning rates); ``True`` with a factory is refused.
        precision: ``"auto"`` (bf16 where the device has bf16 units, else fp32; fp32 on CUDA for a
            network without convolutions), ``"fp32"`` or
            ``"bf16"`` (forward under bf16 autocast; parameters, optimizer and losses stay fp32).
            See :mod:`rsn2.training.precision`.
        memory_format: ``"auto"`` (channels_last for networks with convolutions), ``"contiguous"``
            or ``"channels_last"``; the network is contiguous again when the stage ends.
        negatives: weight of the self-made negatives of each classification task's image batches
            (0: none): rotated and patch-shuffled copies of the batch, trained towards the uniform
            distribution so that a task's output is unsure of inputs that are not its own (what task
            inference reads); see :mod:`rsn2.training.negatives`.
    """

    batch_size: int = 512
    max_epochs: int = 100
    patience: int = 3
    min_delta: float = 0.01
    min_delta_mode: str = "abs"
    early_stopping: str = "task"
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    val_fraction: float = 0.1
    seed: int = 0
    progress: bool | str = True
    rescale_lr: bool | None = None
    precision: str = "auto"
    memory_format: str = "auto"
    negatives: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.negatives) and self.negatives >= 0):
            raise SpecError(f"negatives must be a weight >= 0 (0: off), got {self.negatives!r}")
        if self.optimizer not in OPTIMIZERS:
            raise SpecError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("batch_size", "max_epochs"):
            if int(getattr(self, name)) < 1:
                raise SpecError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 1:
            raise SpecError(f"patience must be >= 1, got {self.patience}")
        if not self.lr > 0:
            raise SpecError(f"lr must be > 0, got {self.lr}")
        if self.rescale_lr is not None and not isinstance(self.rescale_lr, bool):
            raise SpecError(f"rescale_lr must be true or false, got {self.rescale_lr!r}")
        if self.min_delta_mode not in MIN_DELTA_MODES:
            raise SpecError(f"min_delta_mode must be one of {MIN_DELTA_MODES}, got {self.min_delta_mode!r}")
        if self.progress not in (True, False, "lines"):
            raise SpecError(f"progress must be true, false or 'lines', got {self.progress!r}")
        if self.early_stopping not in STOPPING_SCOPES:
            raise SpecError(f"early_stopping must be one of {STOPPING_SCOPES}, got {self.early_stopping!r}")
        if self.precision not in PRECISIONS:
            raise SpecError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.memory_format not in MEMORY_FORMATS:
            raise SpecError(f"memory_format must be one of {MEMORY_FORMATS}, got {self.memory_format!r}")

    def make_optimizer(
        self, params: Iterable[nn.Parameter], lr_factors: Mapping[nn.Parameter, float] | None = None
    ) -> Optimizer:
        """The configured optimizer over ``params``, ``lr`` times ``lr_factors[p]`` for the parameters
        listed there (one param group per factor). Adam and AdamW use PyTorch's fused kernel where
        every parameter allows it (one pass per tensor; the multi-pass version's ``sqrt`` was slow
        on the exact zeros that frozen positions keep in its second moment)."""
        params = list(params)
        fused = bool(params) and all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in params)
        by_factor: dict[float, list[nn.Parameter]] = {}
        for p in params:
            by_factor.setdefault(float((lr_factors or {}).get(p, 1.0)), []).append(p)
        groups: list[dict[str, Any]] = [{"params": ps, "lr": self.lr * f} for f, ps in by_factor.items()]
        if self.optimizer == "adam":
            return torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay, fused=fused or None)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay, fused=fused or None)
        return torch.optim.SGD(groups, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)


@dataclass
class StageResult:
    """What a stage did: per-epoch history, the best epoch, the selection (if it selected) and the
    training seconds (summed over every run when ``resumed`` from a checkpoint; ``earlier_seconds``
    is the part the earlier, interrupted runs spent).

    ``best_epochs``: the epoch (1-based) whose weights each task kept; ``best_epoch`` the latest of
    them (all equal with ``early_stopping="stage"``). A history entry lists the tasks still training
    in that epoch (``val_loss`` and ``val_metric`` hold those only).
    """

    tasks: list[str]
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_epochs: dict[str, int] = field(default_factory=dict)
    selection: SelectionReport | None = None
    seconds: float = 0.0
    resumed: bool = False
    earlier_seconds: float = 0.0
    precision: str = "fp32"
    channels_last: bool = False


def train_stage(
    network: MultitaskNetwork,
    data: Mapping[str, TaskData],
    config: TrainConfig | None = None,
    *,
    optimizer_factory: OptimizerFactory | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
) -> StageResult:
    """Train the tasks in ``data`` together, then freeze their subnetworks.

    Every step sums the mean losses of one batch of each task. Epoch length is that of the task with
    the most batches; shorter tasks start over (reshuffled). After each epoch the summed validation
    loss drives early stopping; the best epoch's weights are restored. Only the stage's own
    subnetworks, biases and task modules change; everything else stays bit-identical
    (:class:`~rsn2.training.isolation.IsolationGuard`).

    With ``config.early_stopping="task"`` each stopping group (tasks sharing a subnetwork, see
    :func:`~rsn2.training.early_stopping.stopping_groups`) has its own stopper on its own summed
    validation loss and keeps the weights of its own best epoch. A stopped group's tasks train on
    empty batches from then on (zero loss), and its weights are set back to its best epoch when the
    stage ends; the stage ends when every group has stopped. Since a group's weights feed only its own
    tasks and batch orders are drawn for every task either way, each group's trajectory is the one it
    would follow if the others never stopped.

    ``checkpoint``: a file the stage's progress is written to after every epoch (atomically, see
    :mod:`rsn2.training.checkpoint`); if it exists when the stage starts, training resumes after its
    last epoch, with the same batches, optimizer state and early-stopping state as an uninterrupted
    run. The file is left in place; delete it once the stage's result is saved.

    Raises:
        TaskError: a task is unknown or not selected yet.
        FrozenSubnetworkError: a task would train a subnetwork an earlier stage froze.
        CheckpointError: ``checkpoint`` exists but was written by another stage or other settings.
    """
    config = config or TrainConfig()
    stage = _prepare_stage(network, data, config, optimizer_factory, checkpoint)
    started = time.perf_counter()
    with channels_last(network, stage.result.channels_last):
        match_state_layout(stage.optimizer)  # a resumed optimizer's moments follow the parameters' new layout
        network.train()
        forward = distributed.data_parallel(network, stage.params) if stage.ranks is not None else None
        with stage.guard:
            for epoch in range(stage.start_epoch, config.max_epochs):
                live = stage.live_tasks()
                if not live:
                    break
                train_losses = _train_epoch(stage, epoch, live, forward)
                _validate_and_stop(stage, epoch, live, train_losses)
                if checkpoint is not None and distributed.is_writer():
                    _save_progress(stage, checkpoint, epoch, time.perf_counter() - started)
        stage.restore_best()
    distributed.check_identical(network, f"after training stage {stage.tasks}")
    network.eval()
    network.freeze(stage.subnetworks)
    result = stage.result
    result.best_epochs = {t: stage.stoppers[_group_key(g)].best_epoch + 1 for g in stage.groups for t in g}
    result.best_epoch = max(result.best_epochs.values())
    result.seconds = stage.seconds_before + time.perf_counter() - started
    return result


@dataclass
class _Stage:
    """What one stage's steps share, made by :func:`_prepare_stage` (resumed from a checkpoint or fresh).

    ``tracked``: the tensors the best epoch and checkpoints hold (the trainable parameters, then the
    batch norms' running statistics of the trainable subnetworks), ``param_masks`` their trainable
    entries; ``best_state``: their values at the best epoch so far (per stopping group with
    ``group_masks``); ``gen``: the generator of every batch order.
    """

    network: MultitaskNetwork
    config: TrainConfig
    tasks: list[str]
    subnetworks: list[str]
    splits: dict[str, tuple[TaskData, tuple[Tensor, Tensor]]]
    statistics: list[tuple[str, Tensor]]
    """(subnetwork, buffer): the batch norms' running statistics of the trainable subnetworks."""
    params: list[nn.Parameter]
    optimizer: Optimizer
    groups: list[tuple[str, ...]]
    stoppers: dict[str, EarlyStopping]
    batch: dict[str, int]
    steps: int
    gen: torch.Generator
    guard: IsolationGuard
    tracked: list[Tensor]
    param_masks: list[Tensor | bool]
    group_masks: dict[tuple[str, ...], list[Tensor | bool]] | None
    identity: dict[str, Any]
    result: StageResult
    precision: Precision
    ranks: distributed.Ranks | None
    best_state: list[Tensor] = field(default_factory=list)
    start_epoch: int = 0
    seconds_before: float = 0.0

    def live_tasks(self) -> list[str]:
        """The tasks whose stopping group has not stopped, in the stage's order."""
        live = {t for g in self.groups if not self.stoppers[_group_key(g)].should_stop for t in g}
        return [t for t in self.tasks if t in live]

    def restore_best(self) -> None:
        """Set every tracked tensor back to its best epoch's value."""
        with torch.no_grad():
            for p, saved in zip(self.tracked, self.best_state, strict=True):
                p.copy_(saved)


def _check_stage(network: MultitaskNetwork, data: Mapping[str, TaskData], config: TrainConfig) -> list[str]:
    """The stage's trainable subnetworks, after checking its tasks and their data (see :func:`train_stage`)."""
    tasks = list(data)
    if not tasks:
        raise TaskError("a stage needs at least one task")
    for t in tasks:
        network.task_spec(t)
        if not network.is_selected(t):
            raise TaskError(f"task {t!r} has no subnetwork yet; call select_subnetworks first (or use fit_stage)")
    own_frozen = [t for t in tasks if t in network.frozen]
    if own_frozen:
        raise FrozenSubnetworkError(f"task(s) {own_frozen} were trained in an earlier stage and are frozen")
    for t, d in data.items():
        check_task_data(network.task_spec(t), d)
        if config.negatives > 0 and network.task_spec(t).kind == "classification":
            try:
                image_shape(network.task_spec(t).input_shape)
            except SpecError as exc:
                raise SpecError(f"task {t!r}: {exc} (or train with negatives=0)") from None
    return [s for s in network.subnetworks_of(tasks) if s not in network.frozen]


def _prepare_stage(
    network: MultitaskNetwork,
    data: Mapping[str, TaskData],
    config: TrainConfig,
    optimizer_factory: OptimizerFactory | None,
    checkpoint: str | os.PathLike[str] | None,
) -> _Stage:
    """Splits on the network's device, the optimizer, the stoppers and the guard of a stage; resumed
    from ``checkpoint`` when that file exists."""
    subnetworks = _check_stage(network, data, config)
    tasks = list(data)
    device = module_device(network)
    splits = {}
    for t, d in data.items():  # the whole split moves to the network's device once, not batch by batch
        train, (x_val, y_val) = validation_split(d, config.val_fraction, config.seed)
        splits[t] = (train.to(device), (x_val.to(device), y_val.to(device)))
    masks = trainable_masks(network, subnetworks, tasks)
    statistics = [  # batch norms' running statistics of the trainable subnetworks: kept with the best epoch's weights
        (s, b)
        for _, layer in network.per_subnetwork_layers()
        for s in subnetworks
        if s in layer.copies
        for b in layer.copies[s].buffers()
    ]
    params = stage_parameters(masks)
    if optimizer_factory is not None:
        if config.rescale_lr:
            raise SpecError("rescale_lr sets the configured optimizer's learning rates; give it or optimizer_factory")
        optimizer = optimizer_factory(params)
    else:
        factors = subnetwork_lr_factors(network, subnetworks) if config.rescale_lr is not False else None
        optimizer = config.make_optimizer(params, factors)
    trainable = {t: [s for s in network.subnetworks_of([t]) if s not in network.frozen] for t in tasks}
    groups = stopping_groups(trainable, config.early_stopping)
    batch = {t: splits[t][0].batch_size or config.batch_size for t in tasks}
    param_masks: list[Tensor | bool] = [*(masks[p] for p in params), *(True for _ in statistics)]
    result = StageResult(tasks)
    result.precision = resolve_precision(config.precision, device, network)
    result.channels_last = resolve_channels_last(config.memory_format, network)
    stage = _Stage(
        network=network,
        config=config,
        tasks=tasks,
        subnetworks=subnetworks,
        splits=splits,
        statistics=statistics,
        params=params,
        optimizer=optimizer,
        groups=groups,
        stoppers={
            _group_key(g): EarlyStopping(config.patience, config.min_delta, config.min_delta_mode) for g in groups
        },
        batch=batch,
        steps=max(math.ceil(len(splits[t][0].x) / batch[t]) for t in tasks),
        gen=torch.Generator().manual_seed(config.seed + 1),
        guard=IsolationGuard(masks, optimizer),  # decides before any state is loaded (see its docstring)
        tracked=[*params, *(b for _, b in statistics)],
        param_masks=param_masks,
        group_masks=_group_masks(network, groups, trainable, params, statistics) if len(groups) > 1 else None,
        identity=stage_identity(tasks, settings_of(config), param_masks) if checkpoint is not None else {},
        result=result,
        precision=result.precision,
        ranks=distributed.active(),
    )
    if checkpoint is not None and Path(checkpoint).is_file():
        _resume(stage, checkpoint)
    else:
        stage.best_state = _copy(stage.tracked)
    return stage


def _resume(stage: _Stage, checkpoint: str | os.PathLike[str]) -> None:
    """Load a stage's progress: weights, best epoch, optimizer, stoppers, history, batch order."""
    resumed = load_stage_checkpoint(
        checkpoint, stage.identity, stage.tracked, stage.param_masks, stage.optimizer, list(stage.stoppers)
    )
    stage.start_epoch, stage.seconds_before = resumed.epochs_done, resumed.seconds
    stage.result.resumed, stage.result.earlier_seconds = True, resumed.seconds
    stage.stoppers, stage.result.history, stage.best_state = resumed.stoppers, resumed.history, resumed.best_params
    stage.gen.set_state(resumed.generator)
    if stage.config.progress:
        tqdm.write(f"stage {stage.tasks}: resumed after epoch {stage.start_epoch} from {checkpoint}", file=sys.stderr)


def _train_epoch(stage: _Stage, epoch: int, live: list[str], forward: nn.Module | None) -> dict[str, float]:
    """One epoch of steps, each over one batch of every task (empty for a stopped task's); each
    task's mean training loss."""
    device = module_device(stage.network)
    orders = {t: _BatchOrder(len(stage.splits[t][0].x), stage.batch[t], stage.gen) for t in stage.tasks}
    sums = dict.fromkeys(stage.tasks, 0.0)
    bar = tqdm(range(stage.steps), desc=f"epoch {epoch + 1}", disable=stage.config.progress is not True, leave=False)
    for _ in bar:
        batches, weights = {}, {}
        for t in stage.tasks:
            idx = orders[t].next()  # drawn for stopped tasks too: the others' batches stay the same
            if stage.ranks is not None:  # this rank's part of the global batch
                idx, weights[t] = distributed.shard(idx, stage.ranks)
            if t not in live:
                idx = idx[:0]
            idx = idx.to(device, non_blocking=True)
            train = stage.splits[t][0]
            batches[t] = (train.x[idx], train.y[idx])
        step_losses = train_step(
            stage.network,
            batches,
            stage.optimizer,
            stage.precision,
            forward=forward,
            loss_weights=weights if stage.ranks is not None else None,
            negatives=stage.config.negatives,
        )
        for t, loss_value in step_losses.items():
            sums[t] += loss_value
        bar.set_postfix({t: f"{sums[t] / (bar.n + 1):.4f}" for t in live})
    if stage.ranks is not None:  # batch norms' statistics, each rank's from its shard: their mean on every rank
        distributed.average_statistics(b for _, b in stage.statistics)
    return {t: sums[t] / stage.steps for t in stage.tasks}


def _validate_and_stop(stage: _Stage, epoch: int, live: list[str], train_losses: Mapping[str, float]) -> None:
    """Validate the live tasks (rank 0's figures on every rank), record the epoch, update each group's
    stopper and keep the weights of the epochs that improved."""
    val = distributed.broadcast({t: evaluate(stage.network, t, *stage.splits[t][1]) for t in live})
    stage.network.train()
    stage.result.history.append(
        {
            "epoch": epoch + 1,
            "train_loss": {t: train_losses[t] for t in live},
            "val_loss": {t: val[t]["loss"] for t in live},
            "val_metric": {t: val[t]["metric"] for t in live},
            "val_loss_total": sum(v["loss"] for v in val.values()),
        }
    )
    progress = stage.config.progress
    if progress:
        summary = ", ".join(f"{t}: loss {val[t]['loss']:.4f} metric {val[t]['metric']:.4f}" for t in live)
        tqdm.write(f"epoch {epoch + 1}: {summary}", file=sys.stderr)
    for g in stage.groups:
        stopper = stage.stoppers[_group_key(g)]
        if g[0] not in live:
            continue
        if stopper.update(epoch, sum(val[t]["loss"] for t in g)):
            if stage.group_masks is None:
                stage.best_state = _copy(stage.tracked)
            else:
                _keep_entries(stage.best_state, stage.tracked, stage.group_masks[g])
        elif stopper.should_stop and len(stage.groups) > 1 and progress:
            message = f"{', '.join(g)}: stopped after epoch {epoch + 1}, best epoch {stopper.best_epoch + 1}"
            tqdm.write(message, file=sys.stderr)


def _save_progress(stage: _Stage, checkpoint: str | os.PathLike[str], epoch: int, seconds: float) -> None:
    """Write the stage's progress after ``epoch`` (0-based) to ``checkpoint``; ``seconds``: this call's."""
    progress = StageProgress(
        epoch + 1,
        list(stage.tracked),
        stage.best_state,
        stage.gen.get_state(),
        stage.stoppers,
        stage.result.history,
        stage.seconds_before + seconds,
    )
    save_stage_checkpoint(checkpoint, stage.identity, progress, stage.optimizer)


def subnetwork_lr_factors(network: MultitaskNetwork, subnetworks: Iterable[str]) -> dict[nn.Parameter, float]:
    """``1/sqrt(f)`` per multitask kernel, ``f`` the fraction of it a trainable subnetwork owns (the mean
    factor over ``subnetworks`` present in the layer); kernels none of them own are left out."""
    names = set(subnetworks)
    factors: dict[nn.Parameter, float] = {}
    for _, layer in network.multitask_layers():
        present = [n for n in layer.subnetworks if n in names]
        scales = [fan_in_scale(layer.owned_count(n) / layer.total_positions) for n in present if layer.owned_count(n)]
        if scales:
            factors[layer.weight] = sum(scales) / len(scales)
    return factors


def train_step(
    network: MultitaskNetwork,
    batches: Mapping[str, tuple[Tensor, Tensor]],
    optimizer: Optimizer,
    precision: Precision = "fp32",
    *,
    forward: nn.Module | None = None,
    loss_weights: Mapping[str, float] | None = None,
    negatives: float = 0.0,
) -> dict[str, float]:
    """One optimizer step on the sum of the tasks' mean losses; returns each task's loss.

    With ``precision="bf16"`` the forward passes run under bf16 autocast; losses are computed in fp32.
    ``forward`` computes every task's output in one call (``{task: x} -> {task: output}``; data-parallel
    training passes its DDP module, see :mod:`rsn2.training.distributed`), and ``loss_weights``
    multiplies each task's mean loss (a rank's share of the global batch). A task with an empty batch
    adds zero (its graph still reaches every parameter, as DDP needs). ``negatives`` > 0: each
    classification task's batch also carries its self-made negatives (:mod:`rsn2.training.negatives`),
    in the same forward pass, their loss to the uniform distribution times ``negatives`` added to the
    task's (the returned loss is the task's own).

    Run it inside the stage's :class:`~rsn2.training.isolation.IsolationGuard` so that nothing
    outside the stage's subnetworks changes.
    """
    if not batches:
        raise TaskError("train_step needs at least one task's batch")
    optimizer.zero_grad(set_to_none=True)
    device = next(iter(batches.values()))[0].device
    inputs = {t: x for t, (x, _) in batches.items()}
    with_negatives = {
        t for t, x in inputs.items() if negatives > 0 and len(x) > 1 and network.task_spec(t).kind == "classification"
    }
    for t in with_negatives:
        inputs[t] = torch.cat([inputs[t], make_negatives(inputs[t], network.task_spec(t).input_shape)])
    with autocast(precision, device):
        if forward is not None:
            outputs = forward(inputs)
        else:
            outputs = {t: network(x, t) for t, x in inputs.items()}
    total: Tensor | None = None
    losses = {}
    for t, (_, y) in batches.items():
        out = outputs[t].float()
        if t in with_negatives:
            out, negative_out = out[: len(y)], out[len(y) :]
        if len(y) == 0:
            loss = out.sum() * 0.0
        else:
            loss = task_kind(network.task_spec(t).kind).loss(out, y)
            if not math.isfinite(float(loss.detach())):
                raise TrainingError(
                    f"task {t!r}: loss is {float(loss.detach())} (training diverged); lower the learning rate or "
                    "check the data for NaN/inf. No optimizer step was taken."
                )
        losses[t] = float(loss.detach())
        if t in with_negatives:
            loss = loss + negatives * uniform_target_loss(negative_out)
        weighted = loss * loss_weights[t] if loss_weights is not None else loss
        total = weighted if total is None else total + weighted
    assert total is not None
    total.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    return losses


def fit_stage(
    network: MultitaskNetwork,
    data: Mapping[str, TaskData],
    config: TrainConfig | None = None,
    *,
    selection: SelectionConfig | None = None,
    optimizer_factory: OptimizerFactory | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
) -> StageResult:
    """Select the subnetworks of the tasks in ``data`` (RSN2 on one training batch each), then train them.

    ``selection``: how (default :class:`~rsn2.selection.SelectionConfig`, rsn2's defaults). Tasks
    already selected are trained as they are. See :func:`select_subnetworks` and :func:`train_stage`
    (``checkpoint`` too: selection is seeded, so a resumed stage selects the same subnetworks).
    """
    config = config or TrainConfig()
    for t, d in data.items():  # before selection changes anything
        check_task_data(network.task_spec(t), d)
    own_frozen = [t for t in data if t in network.frozen]
    if own_frozen:
        raise FrozenSubnetworkError(f"task(s) {own_frozen} were trained in an earlier stage and are frozen")
    new = [t for t in data if not network.is_selected(t)]
    report = None
    if new:
        size = selection.sample_size if selection is not None else None
        samples = selection_samples({t: data[t] for t in new}, config, size)
        report = select_subnetworks(network, new, samples, selection, seed=config.seed)
        distributed.check_identical(network, f"after selecting {new}")
    result = train_stage(network, data, config, optimizer_factory=optimizer_factory, checkpoint=checkpoint)
    result.selection = report
    return result


def selection_samples(
    data: Mapping[str, TaskData], config: TrainConfig, sample_size: int | None = None
) -> dict[str, tuple[Tensor, Tensor]]:
    """The samples :func:`fit_stage` selects each task's subnetwork with: the first ``sample_size``
    of its training split, by default one batch (the task's batch size, else the stage's). Left on
    the data's device."""
    samples = {}
    for t, d in data.items():
        train, _ = validation_split(d, config.val_fraction, config.seed)
        n = sample_size or train.batch_size or config.batch_size
        samples[t] = (train.x[:n], train.y[:n])
    return samples


class _BatchOrder:
    """Endless shuffled batches of indices over ``n`` samples."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator) -> None:
        self.n, self.batch_size, self.gen = n, batch_size, gen
        self._order = torch.randperm(n, generator=gen)
        self._pos = 0

    def next(self) -> Tensor:
        if self._pos >= self.n:
            self._order, self._pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self._order[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return idx


def _copy(tensors: list[Tensor]) -> list[Tensor]:
    return [t.detach().clone() for t in tensors]


def _group_key(group: tuple[str, ...]) -> str:
    return "+".join(group)


def _group_masks(
    network: MultitaskNetwork,
    groups: list[tuple[str, ...]],
    trainable: Mapping[str, list[str]],
    params: list[nn.Parameter],
    statistics: list[tuple[str, Tensor]],
) -> dict[tuple[str, ...], list[Tensor | bool]]:
    """Per stopping group, aligned with ``params`` then ``statistics`` (subnetwork, buffer): the
    entries its subnetworks and task modules own (disjoint across groups, together the stage's
    trainable entries)."""
    out = {}
    for g in groups:
        names = {s for t in g for s in trainable[t]}
        masks = trainable_masks(network, names, g)
        out[g] = [*(masks[p] for p in params), *(s in names for s, _ in statistics)]
    return out


def _keep_entries(best: list[Tensor], params: list[Tensor], masks: list[Tensor | bool]) -> None:
    """Copy the current value of ``params`` into ``best`` where ``masks`` hold (one group's new best)."""
    with torch.no_grad():
        for b, p, m in zip(best, params, masks, strict=True):
            if isinstance(m, bool):
                if m:
                    b.copy_(p)
            else:
                torch.where(m, p, b, out=b)
