"""rsn2 and its baselines on one task stream: each returns the accuracy matrix R of one run.

Every method trains each task in its own stage with the benchmark's :class:`TrainingSettings` (the
same epochs, batch size, optimizer, validation split and best-epoch rule) on the same network
architecture, every task with its own head (task-incremental):

- ``rsn2``: each task gets its own subnetwork of ``keep_fraction`` of every trunk layer, selected by
  RSN2 from the free positions (:func:`~rsn2.training.fit_stage`), then frozen. ``rsn2-select`` and
  ``rsn2-all`` add forward transfer (:class:`~rsn2.selection.SelectionConfig` ``transfer``): a task
  also reads the earlier tasks' frozen positions its gradient scores rank highest (WSN's rule,
  ``keep_fraction`` counting both), or every one of them (PackNet's rule).
- ``packnet`` (Mallya & Lazebnik, CVPR 2018): a task reads every earlier task's frozen weights and
  trains every free position, keeps the ``keep_fraction`` of each layer with the largest trained
  magnitudes, sets the positions it releases to zero (as the paper does: later tasks train them from
  zero), retrains what it kept for ``retrain_epochs``, and freezes it.
- ``packnet-disjoint``: PackNet's train-prune-retrain, but a task reads only its own positions (no
  transfer) and the released positions keep their initial values, rescaled as rsn2 rescales free
  positions (the variant this project ran before forward transfer existed).
- ``finetune``: one dense trunk trained by every task in turn (a new head per task).
- ``ewc`` (Kirkpatrick et al., PNAS 2017): fine-tuning plus ``lambda/2 * sum_k F_k (theta - theta_k)^2``
  over the earlier tasks ``k``, ``F_k`` the diagonal empirical Fisher on ``fisher_samples`` of task
  ``k``'s training samples (see :mod:`rsn2.continual.dense_baselines`).
- ``joint``: the dense trunk trained on all tasks at once (one stage; an upper bound, no R).
- ``stl``: one dense model per task; nothing is shared, nothing forgotten.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from rsn2.continual.config import PACKNET_READS_EARLIER, RSN2_TRANSFER, BenchmarkConfig, stage_seed
from rsn2.continual.dense_baselines import train_sequential_dense
from rsn2.continual.networks import BenchmarkNetwork
from rsn2.continual.storage import storage_report, task_weights
from rsn2.continual.streams import ContinualTask
from rsn2.continual.task_identification import identification_report
from rsn2.errors import CapacityError, ConfigError
from rsn2.layers import MultitaskKernelLayer, PerSubnetwork
from rsn2.network import MultitaskNetwork
from rsn2.selection import SelectionConfig, select_subnetworks
from rsn2.selection.importance import Slot
from rsn2.selection.rescaling import rescale_kept
from rsn2.training import StageResult, evaluate, fit_stage, train_stage

Row = list[float | None]


@dataclass
class MethodRun:
    """One method's run on one stream.

    ``R[i][j]``: test accuracy (percent) of task ``j`` after stage ``i``, ``None`` above the diagonal
    (a task-incremental head is not trained before its stage). ``R`` is ``None`` for ``joint``, which
    has one stage; ``final`` is every task's accuracy at the end. ``stage_seconds``: training time
    of each stage (selection and the PackNet probe included, evaluation not).
    """

    method: str
    seed: int
    tasks: list[str]
    R: list[Row] | None
    final: list[float]
    stage_seconds: list[float]
    details: dict[str, Any] = field(default_factory=dict)
    network: MultitaskNetwork | None = field(default=None, repr=False, compare=False)
    """The trained multi-head network (rsn2, PackNet, EWC, fine-tuning, joint); not stored in run files."""
    precision: str | None = None
    """What the stages trained in (``"fp32"`` or ``"bf16"``), as the training loop reported it."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "seed": self.seed,
            "tasks": self.tasks,
            "R": self.R,
            "final": self.final,
            "stage_seconds": self.stage_seconds,
            "details": self.details,
            "precision": self.precision,
        }


def accuracy(network: MultitaskNetwork, task: ContinualTask) -> float:
    """Test accuracy of ``task`` in percent."""
    return 100.0 * evaluate(network, task.name, task.x_test, task.y_test)["metric"]


def run_method(method: str, config: BenchmarkConfig, tasks: Sequence[ContinualTask], seed: int) -> MethodRun:
    """Train ``method`` on ``tasks`` in order and measure R. Initialisation is seeded by ``seed``."""
    options = config.methods.get(method, {})
    torch.manual_seed(seed)
    if method in RSN2_TRANSFER or method in PACKNET_READS_EARLIER:
        return _subnetwork_method(method, config, tasks, seed, options)
    if method == "stl":
        return _stl(config, tasks, seed)
    if method == "joint":
        return _joint(config, tasks, seed)
    if method in ("finetune", "ewc"):
        net = BenchmarkNetwork.of(config, tasks[0].input_shape).shared_by_all(tasks)
        select_subnetworks(net, [t.name for t in tasks], method="random")  # every position: nothing ranked
        lam = float(options.get("lambda", 1.0)) if method == "ewc" else 0.0
        fisher = int(options.get("fisher_samples", 500))
        rows, seconds, precision = train_sequential_dense(
            net, tasks, config.training, seed, ewc_lambda=lam, fisher_samples=fisher, evaluate_task=accuracy
        )
        details: dict[str, Any] = {"lambda": lam, "fisher_samples": fisher} if method == "ewc" else {}
        details["task_inference"] = identification_report(net, tasks)
        names = [t.name for t in tasks]
        return MethodRun(method, seed, names, rows, _last(rows), seconds, details, net, precision=precision)
    raise ConfigError(f"unknown method {method!r}")


def _subnetwork_method(
    method: str,
    config: BenchmarkConfig,
    tasks: Sequence[ContinualTask],
    seed: int,
    options: Mapping[str, Any],
    *,
    stop_when_full: bool = False,
) -> MethodRun:
    """rsn2 or PackNet (any variant): tasks added one per stage to one network, each into its own subnetwork.

    ``stop_when_full``: when a task no longer fits (:class:`CapacityError` from ``add_tasks``, before
    anything changes), end the run there and record the error in ``details["capacity_error"]``;
    else the error propagates."""
    networks = BenchmarkNetwork.of(config, tasks[0].input_shape)
    net: MultitaskNetwork | None = None
    rows: list[Row] = []
    seconds = []
    details: dict[str, Any] = {}
    trained: list[ContinualTask] = []
    precision: str | None = None
    for i, task in enumerate(tasks):
        try:
            transfer = RSN2_TRANSFER.get(method, "none")
            spec = networks.task_spec(task, options.get("keep_fraction"))
            net = networks.grow(net, spec, transfer)  # CapacityError here changes nothing
        except CapacityError as exc:
            if not stop_when_full:
                raise
            details["capacity_error"] = f"task {i + 1} ({task.name}): {exc}"
            break
        trained.append(task)
        started = time.perf_counter()
        if method in RSN2_TRANSFER:
            train = config.training.train_config(
                stage_seed(seed, i),
                rescale_lr=options.get("rescale_lr"),
                negatives=float(options.get("negatives", 0.0)),
            )
            result = fit_stage(net, {task.name: task.train}, train, selection=config.selection_config(method))
        else:
            retrain = int(options.get("retrain_epochs", 2))
            result = packnet_stage(net, task, config, stage_seed(seed, i), retrain, PACKNET_READS_EARLIER[method])
        precision = result.precision
        seconds.append(time.perf_counter() - started)
        rows.append(_row(net, tasks, i))
    rows = [row[: len(trained)] for row in rows]
    details["kept_fraction"] = {t.name: net.kept_fraction(t.name) for t in trained} if net is not None else {}
    details["read_fraction"] = {t.name: net.read_fraction(t.name) for t in trained} if net is not None else {}
    if net is not None:
        details["storage"] = storage_report(net)
        details["task_weights"] = {t.name: task_weights(net, t.name) for t in trained}
        details["task_inference"] = identification_report(net, trained)
    if method in PACKNET_READS_EARLIER:
        details["retrain_epochs"] = int(options.get("retrain_epochs", 2))
    else:
        details["selection"] = config.selection_config(method).to_dict()
    names = [t.name for t in trained]
    return MethodRun(method, seed, names, rows, _last(rows), seconds, details, net, precision=precision)


def run_until_full(config: BenchmarkConfig, tasks: Sequence[ContinualTask], seed: int) -> MethodRun:
    """rsn2 on ``tasks`` in order until one no longer fits (the capacity sweep's run)."""
    torch.manual_seed(seed)
    return _subnetwork_method("rsn2", config, tasks, seed, config.methods.get("rsn2", {}), stop_when_full=True)


class TrainedMagnitude:
    """Importance for PackNet's pruning: ``|w|`` of a probe network trained on every free position."""

    name = "packnet-magnitude"

    def __init__(self, probe: MultitaskNetwork) -> None:
        self.layers = dict(probe.multitask_layers())

    def __call__(
        self,
        network: MultitaskNetwork,
        tasks: Sequence[str],
        samples: Mapping[str, tuple[Tensor, Tensor]],
        slots: Sequence[Slot],
    ) -> dict[Slot, Tensor]:
        return {(key, name): self.layers[key].weight.detach().abs() for key, name in slots}


def own_all_free(network: MultitaskNetwork, task: str, rescale: bool = False, read_frozen: bool = False) -> None:
    """Give ``task``'s new subnetworks every free position of each layer on its path (and a fresh
    copy of each per-subnetwork layer, such as a batch norm); with ``read_frozen``, let them read every
    frozen position too (forward transfer, read-only).

    ``rescale``: multiply those positions by ``1/sqrt(free fraction)`` of their layer, as rsn2 rescales
    a new subnetwork (:func:`~rsn2.selection.rescaling.rescale_kept`); nothing changes in a layer that
    is still wholly free."""
    for step in network.path(task):
        layer = step.module
        if isinstance(layer, PerSubnetwork) and step.subnetwork and step.subnetwork not in layer.subnetworks:
            layer.add_subnetwork(step.subnetwork)
        if isinstance(layer, MultitaskKernelLayer) and step.subnetwork and step.subnetwork not in layer.subnetworks:
            free = layer.free_mask
            layer.add_subnetwork(step.subnetwork)
            layer.assign(step.subnetwork, free)
            if read_frozen and layer.frozen:
                layer.set_reads(step.subnetwork, layer.frozen_positions())
            if rescale:
                with torch.no_grad():
                    rescale_kept(layer.weight, free, "layer")


def packnet_stage(
    network: MultitaskNetwork,
    task: ContinualTask,
    config: BenchmarkConfig,
    seed: int,
    retrain_epochs: int,
    reads_earlier: bool = True,
) -> StageResult:
    """PackNet's three steps for ``task`` (already added to ``network``): train on a copy that owns every
    free position, keep the largest trained magnitudes (``keep_fraction`` of each layer) with their
    trained values, retrain them for ``retrain_epochs``, freeze. Returns the retraining's stage result.

    ``reads_earlier`` (the paper's PackNet): the task reads every earlier task's frozen weights, in
    its dense phase and after (forward transfer ``"all"``), and the free positions it does not keep
    are set to zero. Without (``packnet-disjoint``), a later task's dense phase has only the free
    positions; those are rescaled by ``1/sqrt(free fraction)`` first (as rsn2 rescales a
    subnetwork): unscaled, the last task of Split-CIFAR-10 on CONV-A started from a vanishing signal
    and stayed at chance (docs/continual.md)."""
    probe = copy.deepcopy(network)
    own_all_free(probe, task.name, rescale=not reads_earlier, read_frozen=reads_earlier)
    train_stage(probe, {task.name: task.train}, config.training.train_config(seed, rescale_lr=False))
    transfer = "all" if reads_earlier else "none"
    pruning = SelectionConfig(method=TrainedMagnitude(probe), rescale=False, reinit=False, transfer=transfer)
    select_subnetworks(network, [task.name], selection=pruning, seed=seed)
    probe_layers = dict(probe.multitask_layers())
    probe_copies = dict(probe.per_subnetwork_layers())
    with torch.no_grad():
        for step in network.path(task.name):
            layer = step.module
            if isinstance(layer, PerSubnetwork) and step.subnetwork not in network.frozen:
                assert step.subnetwork is not None  # the trained copy (a norm's affine and statistics)
                layer.copies[step.subnetwork].load_state_dict(
                    probe_copies[step.key].copies[step.subnetwork].state_dict()
                )
            if not isinstance(layer, MultitaskKernelLayer) or step.subnetwork is None:
                continue
            trained = probe_layers[step.key]
            mask = layer.mask(step.subnetwork)
            layer.weight[mask] = trained.weight[mask]
            if layer.has_bias and step.subnetwork not in network.frozen:
                layer.biases[step.subnetwork].copy_(trained.biases[step.subnetwork])
            if reads_earlier:  # released: PackNet zeroes what the task trained but does not keep
                layer.weight[layer.free_mask] = 0.0
    retrain = config.training.train_config(seed, rescale_lr=False, max_epochs=retrain_epochs, patience=retrain_epochs)
    return train_stage(network, {task.name: task.train}, retrain)


def _stl(config: BenchmarkConfig, tasks: Sequence[ContinualTask], seed: int) -> MethodRun:
    networks = BenchmarkNetwork.of(config, tasks[0].input_shape)
    scores: list[float] = []
    rows: list[Row] = []
    seconds = []
    precision: str | None = None
    for i, task in enumerate(tasks):
        torch.manual_seed(stage_seed(seed, i))
        net = networks.dense(task)
        started = time.perf_counter()
        result = train_stage(net, {task.name: task.train}, config.training.train_config(stage_seed(seed, i)))
        precision = result.precision
        seconds.append(time.perf_counter() - started)
        scores.append(accuracy(net, task))
        rows.append([*scores, *[None] * (len(tasks) - i - 1)])
    return MethodRun("stl", seed, [t.name for t in tasks], rows, list(scores), seconds, precision=precision)


def _joint(config: BenchmarkConfig, tasks: Sequence[ContinualTask], seed: int) -> MethodRun:
    net = BenchmarkNetwork.of(config, tasks[0].input_shape).shared_by_all(tasks)
    started = time.perf_counter()
    result = fit_stage(net, {t.name: t.train for t in tasks}, config.training.train_config(stage_seed(seed, 0)))
    seconds = [time.perf_counter() - started]
    final = [accuracy(net, t) for t in tasks]
    names = [t.name for t in tasks]
    return MethodRun("joint", seed, names, None, final, seconds, network=net, precision=result.precision)


def _row(net: MultitaskNetwork, tasks: Sequence[ContinualTask], stage: int) -> Row:
    return [accuracy(net, t) if j <= stage else None for j, t in enumerate(tasks)]


def _last(rows: Sequence[Row]) -> list[float]:
    return [float(v) for v in rows[-1] if v is not None]
