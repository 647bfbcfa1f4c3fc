"""The multitask network: per-task adapters, a shared trunk of multitask layers, per-task heads."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from rsn2.errors import CapacityError, SpecError, TaskError
from rsn2.layers import MultitaskKernelLayer
from rsn2.layers.ownership import decode_state, encode_state, requested_positions
from rsn2.network.build import build_layer, push_sample
from rsn2.network.spec import NetworkSpec, SharedSubnetwork, TaskSpec


@dataclass(frozen=True)
class PathStep:
    """One layer on a task's path.

    ``subnetwork`` and ``keep_fraction`` are set for multitask layers only: the subnetwork the task
    reads there and the fraction of the layer that subnetwork keeps.
    """

    key: str
    module: nn.Module
    subnetwork: str | None
    keep_fraction: float | None


class MultitaskNetwork(nn.Module):
    """Many tasks in one network, each in its own (or a shared) disjoint subnetwork.

    Built from a :class:`NetworkSpec`. Task ``t`` runs ``adapters[t]``, then ``trunk[enter_at:]``,
    then ``heads[t]``. In every multitask layer it reads one subnetwork: its own (named ``t``) or a
    shared one (:class:`SharedSubnetwork`). Subnetworks are created by :mod:`rsn2.selection` and frozen
    by :mod:`rsn2.training` once their stage is trained.

    Shape:
        - Input of task ``t``: ``(N, *spec.task(t).input_shape)``; float, or int64 token ids when
          the task's adapter starts with an embedding.
        - Output: ``(N, n_outputs)`` logits (classification) or predictions (regression).

    Examples::

        >>> from rsn2.network.spec import NetworkSpec, TaskSpec, linear, relu
        >>> spec = NetworkSpec([linear(4, 8), relu()],
        ...                    [TaskSpec("a", "classification", (4,), head=[linear(8, 3)], keep_fraction=0.5)])
        >>> net = MultitaskNetwork(spec)
        >>> net.task_names
        ['a']
    """

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = NetworkSpec(spec.trunk, (), ())
        self.trunk = nn.ModuleList(build_layer(s) for s in spec.trunk)
        self.adapters = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        self.frozen: set[str] = set()
        self._paths: dict[str, tuple[NetworkSpec, list[PathStep]]] = {}
        self.selection_log: dict[str, dict[str, Any]] = {}
        self.add_tasks(spec.tasks, spec.shared)
        self.register_load_state_dict_post_hook(MultitaskNetwork._refreeze_after_load)

    # ----------------------------------------------------------------- structure
    def add_tasks(self, tasks: Sequence[TaskSpec], shared: Sequence[SharedSubnetwork] = ()) -> None:
        """Add tasks (and shared groups among them) for a later stage; their modules start unselected."""
        new_spec = self.spec.with_tasks(tasks, shared)
        for group in shared:
            old = [t for t in group.tasks if t in self.spec.task_names]
            if old:
                raise SpecError(f"shared subnetwork {group.name!r} names already-added task(s) {old}")
        for task in tasks:
            self.adapters[task.name] = nn.ModuleList(build_layer(s) for s in task.adapter)
            self.heads[task.name] = nn.ModuleList(build_layer(s) for s in task.head)
        try:
            self.spec = new_spec
            for task in tasks:
                self._check_shapes(task)
            self._check_fits([t.name for t in tasks])
        except Exception:
            for task in tasks:
                del self.adapters[task.name]
                del self.heads[task.name]
            self.spec = NetworkSpec(
                self.spec.trunk,
                self.spec.tasks[: len(self.spec.tasks) - len(tasks)],
                self.spec.shared[: len(self.spec.shared) - len(shared)],
            )
            raise

    def _check_shapes(self, task: TaskSpec) -> None:
        """Push one zero sample through the task's path, naming the layer where shapes disagree."""
        dtype = torch.long if task.takes_tokens else torch.float32
        try:
            x = push_sample(
                ((s.key, s.module) for s in self.path(task.name)), torch.zeros((1, *task.input_shape), dtype=dtype)
            )
        except SpecError as exc:
            raise SpecError(f"task {task.name!r}: {exc}") from None
        if x.dim() != 2:
            raise SpecError(
                f"task {task.name!r}: head must output (N, outputs), got per-sample shape {tuple(x.shape[1:])}"
            )

    def _check_fits(self, tasks: Sequence[str]) -> None:
        """Raise :class:`CapacityError` when the new ``tasks`` ask a layer for more positions than it has free."""
        asks: dict[str, dict[str, int]] = {}
        for task in tasks:
            for step in self.path(task):
                layer = step.module
                if isinstance(layer, MultitaskKernelLayer) and step.subnetwork not in layer.subnetworks:
                    assert step.subnetwork is not None and step.keep_fraction is not None
                    need = requested_positions(step.keep_fraction, layer.total_positions)
                    asks.setdefault(step.key, {})[step.subnetwork] = need
        layers = dict(self.multitask_layers())
        for key, wanted in asks.items():
            free = layers[key].free_capacity
            if sum(wanted.values()) > free:
                shares = ", ".join(f"{name}: {n}" for name, n in wanted.items())
                raise CapacityError(
                    f"layer {key!r} ({layers[key].total_positions} positions) can never hold the new task(s): "
                    f"{sum(wanted.values())} positions asked ({shares}) but only {free} are free "
                    f"({free / layers[key].total_positions:.1%}); lower their keep_fraction"
                )

    @property
    def task_names(self) -> list[str]:
        return self.spec.task_names

    def task(self, name: str) -> TaskSpec:
        return self.spec.task(name)

    def path(self, task: str) -> list[PathStep]:
        """The layers task ``task`` runs through, in order, with the subnetwork it reads in each.

        Cached per task; the cache belongs to one ``self.spec`` object (``add_tasks`` replaces it).
        """
        cached = self._paths.get(task)
        if cached is None or cached[0] is not self.spec:
            cached = (self.spec, self._build_path(task))
            self._paths[task] = cached
        return list(cached[1])

    def _build_path(self, task: str) -> list[PathStep]:
        spec = self.spec.task(task)
        shared_at: dict[int, SharedSubnetwork] = {i: g for g in self.spec.shared if task in g.tasks for i in g.layers}
        steps: list[PathStep] = []
        adapter_keep = spec.keep_fraction if spec.prune_adapter else 1.0
        for i, m in enumerate(self._adapter(task)):
            steps.append(self._step(f"adapters.{task}.{i}", m, task, adapter_keep))
        for i in range(spec.enter_at, len(self.trunk)):
            group = shared_at.get(i)
            name, keep = (group.name, group.keep_fraction) if group else (task, spec.keep_fraction)
            steps.append(self._step(f"trunk.{i}", self.trunk[i], name, keep))
        head_keep = spec.keep_fraction if spec.prune_head else 1.0
        for i, m in enumerate(self._head(task)):
            steps.append(self._step(f"heads.{task}.{i}", m, task, head_keep))
        return steps

    def _adapter(self, task: str) -> nn.ModuleList:
        return cast(nn.ModuleList, self.adapters[task])

    def _head(self, task: str) -> nn.ModuleList:
        return cast(nn.ModuleList, self.heads[task])

    @staticmethod
    def _step(key: str, module: nn.Module, subnetwork: str, keep: float) -> PathStep:
        if isinstance(module, MultitaskKernelLayer):
            return PathStep(key, module, subnetwork, keep)
        return PathStep(key, module, None, None)

    def multitask_layers(self) -> Iterator[tuple[str, MultitaskKernelLayer]]:
        """Every multitask layer with its key (``trunk.3``, ``adapters.boston.0``, ``heads.mnist.0``)."""
        for name, module in self.named_modules():
            if isinstance(module, MultitaskKernelLayer):
                yield name, module

    def subnetworks_of(self, tasks: Sequence[str]) -> list[str]:
        """Names of the subnetworks the given tasks read, in path order, without repeats."""
        out: list[str] = []
        for t in tasks:
            for step in self.path(t):
                if step.subnetwork is not None and step.subnetwork not in out:
                    out.append(step.subnetwork)
        return out

    def tasks_of(self, subnetwork: str) -> list[str]:
        """The tasks that read ``subnetwork`` somewhere on their path."""
        return [t for t in self.task_names if subnetwork in self.subnetworks_of([t])]

    def is_selected(self, task: str) -> bool:
        """True when every multitask layer on the task's path has its subnetwork registered."""
        return all(
            isinstance(step.module, MultitaskKernelLayer) and step.subnetwork in step.module.subnetworks
            for step in self.path(task)
            if step.subnetwork is not None
        )

    def kept_fraction(self, task: str) -> float:
        """Measured share of the pruned layers' positions on the task's path that its subnetworks own."""
        owned = total = 0
        for step in self.path(task):
            layer = step.module
            if isinstance(layer, MultitaskKernelLayer) and step.keep_fraction is not None and step.keep_fraction < 1:
                owned += layer.owned_count(step.subnetwork) if step.subnetwork in layer.subnetworks else 0
                total += layer.total_positions
        return owned / total if total else 1.0

    def task_modules(self, task: str) -> list[tuple[str, nn.Module]]:
        """The task's own modules that are not multitask layers (embeddings), with their keys."""
        out = []
        for prefix, modules in (("adapters", self._adapter(task)), ("heads", self._head(task))):
            for i, m in enumerate(modules):
                if not isinstance(m, MultitaskKernelLayer) and any(True for _ in m.parameters()):
                    out.append((f"{prefix}.{task}.{i}", m))
        return out

    # ----------------------------------------------------------------- forward
    def forward(self, x: Tensor, task: str) -> Tensor:
        """Run task ``task`` on a batch ``x``; only its subnetworks' positions are used."""
        if task not in self.heads:
            raise TaskError(f"unknown task {task!r}; tasks: {self.task_names}")
        if not isinstance(x, Tensor):
            raise TaskError(f"task {task!r}: input must be a torch.Tensor, got {type(x).__name__} (torch.as_tensor(x))")
        spec = self.task(task)
        if x.dim() != len(spec.input_shape) + 1 or tuple(x.shape[1:]) != spec.input_shape:
            raise TaskError(
                f"task {task!r} takes input of shape (N, {', '.join(map(str, spec.input_shape))}), got {tuple(x.shape)}"
            )
        if spec.takes_tokens != (not x.dtype.is_floating_point):
            want = "int64 token ids" if spec.takes_tokens else "floating-point values"
            raise TaskError(f"task {task!r} takes {want}, got {x.dtype}")
        for step in self.path(task):
            x = step.module(x, step.subnetwork) if step.subnetwork is not None else step.module(x)
        return x

    def forward_many(self, batches: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Run several tasks in one call: ``{task: batch}`` in, ``{task: output}`` out."""
        return {task: self(x, task) for task, x in batches.items()}

    def predict_proba(self, x: Tensor, task: str) -> Tensor:
        """Class probabilities (softmax of the logits) of a classification task, no gradient."""
        if self.task(task).kind != "classification":
            raise TaskError(f"task {task!r} is a regression task; predict_proba needs classification")
        with torch.no_grad():
            return torch.softmax(self(x, task), dim=-1)

    def ensemble(self, x: Tensor, tasks: Sequence[str]) -> Tensor:
        """Average of the softmax outputs of several subnetworks trained on the same task.

        Shape: ``(N, classes)``. All ``tasks`` must be classification tasks with the same number of
        classes (SPEC Experiment 1).
        """
        if not tasks:
            raise TaskError("ensemble needs at least one task")
        probs = [self.predict_proba(x, t) for t in tasks]
        widths = {p.shape[-1] for p in probs}
        if len(widths) != 1:
            raise TaskError(f"ensemble members disagree on the number of classes: {sorted(widths)}")
        return torch.stack(probs).mean(dim=0)

    # ----------------------------------------------------------------- state
    def freeze(self, subnetworks: Sequence[str]) -> None:
        """Mark subnetworks as trained: nothing changes them again.

        Each multitask layer holding one of them freezes it (:meth:`MultitaskKernelLayer.freeze`: its
        forward reads a snapshot no optimizer holds), and the own modules (adapter, head) of a task
        whose subnetwork is frozen stop requiring gradients. So a plain loop with any optimizer over
        ``parameters()`` cannot change what a frozen task computes; :func:`rsn2.training.train_stage`
        also keeps the raw weights unchanged.
        """
        self.frozen.update(subnetworks)
        self._apply_freezing(set(subnetworks))

    def _apply_freezing(self, names: set[str]) -> None:
        for _, layer in self.multitask_layers():
            for name in layer.subnetworks:
                if name in names:
                    layer.freeze(name)
        for task in self.task_names:
            if task in names:
                for _, module in self.task_modules(task):
                    module.requires_grad_(False)

    def get_extra_state(self) -> Tensor:
        return encode_state({"frozen": sorted(self.frozen)})

    def set_extra_state(self, state: Tensor | dict[str, Any]) -> None:
        self.frozen = set(decode_state(state).get("frozen", ()))
        # the layers' weights load after this (parents first): _refreeze_after_load snapshots them then

    def _refreeze_after_load(self, *_: Any) -> None:
        self._apply_freezing(set(self.frozen))

    def extra_repr(self) -> str:
        tasks = ", ".join(f"{t.name}({t.kind}, keep={t.keep_fraction:g})" for t in self.spec.tasks)
        shared = (
            "; shared: " + ", ".join(f"{g.name}={list(g.tasks)}@{list(g.layers)}" for g in self.spec.shared)
            if self.spec.shared
            else ""
        )
        frozen = f"; frozen: {sorted(self.frozen)}" if self.frozen else ""
        return f"tasks: {tasks}{shared}{frozen}"
