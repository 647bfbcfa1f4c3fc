"""The multitask network: per-task adapters, a shared trunk of multitask layers, per-task heads."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, cast

import torch
from torch import Tensor, nn

from rsn2.errors import CapacityError, SpecError, TaskError
from rsn2.layers import MultitaskEmbedding, MultitaskKernelLayer, PerSubnetwork
from rsn2.layers.ownership import decode_state, encode_state, requested_positions
from rsn2.layers.routing import Mixture, Route, active_route, compiled_route, routed
from rsn2.network.build import build_layer
from rsn2.network.modes import evaluating
from rsn2.network.spec import NetworkSpec, SharedSubnetwork, TaskSpec
from rsn2.network.task_inference import TaskGuess, infer_task


@dataclass(frozen=True)
class PathStep:
    """One layer on a task's path.

    ``subnetwork`` and ``keep_fraction`` are set for multitask layers only (kernel layers and
    :class:`~rsn2.layers.PerSubnetwork` copies, whose keep fraction is 1): the subnetwork the task
    reads there and the fraction of the layer that subnetwork keeps. Steps inside a converted
    ``body`` are listed in module order, which need not be the order they run in.
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

    def __init__(self, spec: NetworkSpec, body: nn.Module | None = None) -> None:
        """``body``: a module already converted by :func:`rsn2.multitask` (then ``spec.trunk`` is
        empty); every task runs its adapter, the body, then its head."""
        super().__init__()
        if body is not None and spec.trunk:
            raise SpecError("a network has either a converted body or a trunk of layer specs, not both")
        self.spec = NetworkSpec(spec.trunk, (), ())
        self.trunk = nn.ModuleList(build_layer(s) for s in spec.trunk)
        self.body = body
        self.conversion: dict[str, Any] | None = None  # how rsn2.multitask made ``body`` (saved in files)
        self._routes: dict[tuple[str, bool], tuple[NetworkSpec, Route]] = {}
        self.adapters = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        self.frozen: set[str] = set()
        self._paths: dict[str, tuple[NetworkSpec, list[PathStep]]] = {}
        self.selection_log: dict[str, dict[str, Any]] = {}
        self.add_tasks(spec.tasks, spec.shared)
        self.register_load_state_dict_post_hook(MultitaskNetwork._refreeze_after_load)

    # ----------------------------------------------------------------- structure
    def add_tasks(
        self, tasks: Sequence[TaskSpec], shared: Sequence[SharedSubnetwork] = (), *, transfer: str = "none"
    ) -> None:
        """Add tasks (and shared groups among them) for a later stage; their modules start unselected.

        Raises :class:`CapacityError`, changing nothing, when a layer cannot hold what they ask: their
        keep fractions of its free positions, or, for tasks to be selected with ``transfer="select"``
        (:class:`~rsn2.selection.SelectionConfig`), of its free and frozen positions together."""
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
            self._check_shared_keys(shared)
            widths = {task.name: self._check_shapes(task) for task in tasks}
            self._check_fits([t.name for t in tasks], transfer)
            if self.body is not None:  # what the specs cannot say themselves: the body's output width, vocabulary
                done = tuple(self._completed(t, widths[t.name]) for t in tasks)
                self.spec = NetworkSpec(self.spec.trunk, (*self.spec.tasks[: -len(tasks)], *done), self.spec.shared)
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

    def _check_shared_keys(self, groups: Sequence[SharedSubnetwork]) -> None:
        """Body keys of shared groups must each cover a multitask layer of the body, and no task may
        share one layer twice; trunk indices need a trunk (checked by :class:`NetworkSpec`)."""
        keys = [] if self.body is None else [f"body.{n}" for n, m in self.body.named_modules() if _is_multitask(m)]
        for group in groups:
            if not group.in_body:
                if self.body is not None:
                    raise SpecError(
                        f"shared subnetwork {group.name!r} names trunk layers {list(group.layers)}; this network "
                        "is a converted module: name its modules ('body' or 'body.<module name>')"
                    )
                continue
            if self.body is None:
                raise SpecError(f"shared subnetwork {group.name!r} names body modules but this network has no body")
            for k in group.layers:
                assert isinstance(k, str)
                if not any(key == k or key.startswith(f"{k}.") for key in keys):
                    raise SpecError(
                        f"shared subnetwork {group.name!r}: {k!r} holds no multitask layer of the body; "
                        f"multitask layers: {keys[:12]}{' ...' if len(keys) > 12 else ''}"
                    )
        for key in keys:
            for task in self.spec.task_names:
                sharing = [g.name for g in self.spec.shared if task in g.tasks and g.covers(key)]
                if len(sharing) > 1:
                    raise SpecError(f"task {task!r} shares body layer {key!r} twice ({sharing})")

    def _completed(self, task: TaskSpec, width: int) -> TaskSpec:
        """``task`` with ``output_width`` (no head) and ``vocabulary`` (token input) read off the body."""
        fill: dict[str, Any] = {}
        if not task.head:
            fill["output_width"] = width
        if task.token_input and task.vocabulary is None:
            embedding = next((m for m in self.body.modules() if isinstance(m, MultitaskEmbedding)), None)  # type: ignore[union-attr]
            if embedding is None:
                raise SpecError(f"task {task.name!r} takes token ids but the module has no nn.Embedding")
            fill["vocabulary"] = embedding.num_embeddings
        return replace(task, **fill) if fill else task

    def _check_shapes(self, task: TaskSpec) -> int:
        """Push one zero sample through the task's path (new subnetworks reading every free position,
        every module in eval mode), naming the task when shapes disagree."""
        dtype = torch.long if task.takes_tokens else torch.float32
        running: list[tuple[str, nn.Module, Tensor | None]] = []  # the innermost module running, with its input

        def enter(name: str) -> Any:
            return lambda m, args: running.append((name, m, next((a for a in args if isinstance(a, Tensor)), None)))

        def leave(*_: Any) -> None:
            running.pop()

        hooks = [m.register_forward_pre_hook(enter(name)) for name, m in self.named_modules() if name]
        hooks += [m.register_forward_hook(leave) for name, m in self.named_modules() if name]
        try:
            with torch.no_grad(), evaluating(self), routed(self.candidate_route(task.name)):
                x = self._run(task.name, torch.zeros((1, *task.input_shape), dtype=dtype))
        except (RuntimeError, IndexError, ValueError, AssertionError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if running:
                name, module, given = running[-1]
                shape = tuple(given.shape[1:]) if given is not None else "?"
                where = f"input of shape {shape} does not fit layer {name} ({type(module).__name__})"
            else:
                where = f"input of shape {task.input_shape} does not fit"
            raise SpecError(f"task {task.name!r}: {where}: {message}") from None
        finally:
            for h in hooks:
                h.remove()
        if not isinstance(x, Tensor) or x.dim() != 2:
            shape = tuple(x.shape[1:]) if isinstance(x, Tensor) else type(x).__name__
            raise SpecError(f"task {task.name!r}: the network must output (N, outputs), got per-sample shape {shape}")
        return int(x.shape[1])

    def _check_fits(self, tasks: Sequence[str], transfer: str = "none") -> None:
        """Raise :class:`CapacityError` when the new ``tasks`` ask a layer for more positions than it has
        free (each task alone, for ``transfer="select"``, may also be met by frozen positions)."""
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
            if transfer == "select" and layers[key].frozen:  # each task's request alone, frozen positions too
                room = free + int(layers[key].frozen_positions().sum())
                over = {name: n for name, n in wanted.items() if n > room}
                if over:
                    raise CapacityError(
                        f"layer {key!r} ({layers[key].total_positions} positions) can never hold {over}: only "
                        f"{room} positions are free or frozen; lower their keep_fraction"
                    )
                continue
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

    def task_spec(self, name: str) -> TaskSpec:
        """The description of task ``name`` (raises :class:`TaskError` for an unknown name)."""
        return self.spec.task(name)

    def task(self, name: str) -> AbstractContextManager[Route]:
        """Make ``name`` the active task inside a ``with`` block: ``with net.task("a"): y = net(x)``.

        Every multitask layer (also inside a converted body called directly) then reads task
        ``name``'s subnetwork. The active task is held per thread and per asyncio task
        (:mod:`rsn2.layers.routing`), so concurrent requests for different tasks do not mix.
        """
        return routed(self.route(name))

    def route(self, task: str) -> Route:
        """The subnetwork every multitask layer on ``task``'s path reads (cached per spec)."""
        return self._cached_route(task, candidates=False)

    def candidate_route(self, task: str) -> Route:
        """As :meth:`route`, but where ``task``'s subnetwork is not registered yet it reads every free
        position (per-subnetwork copies: the template). What selection scores and shape checks run."""
        return self._cached_route(task, candidates=True)

    def _cached_route(self, task: str, candidates: bool) -> Route:
        steps = self.path(task)
        hit = self._routes.get((task, candidates))
        if hit is not None and hit[0] is self.spec and not candidates:
            return hit[1]
        layers = {s.module: s.subnetwork for s in steps if s.subnetwork is not None}
        new = frozenset(m for m, name in layers.items() if candidates and name not in _subnetworks(m))
        route = Route(task, layers, new)
        if not candidates:
            self._routes[(task, candidates)] = (self.spec, route)
        return route

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
        shared_at = {i: g for g in self.spec.shared if task in g.tasks and not g.in_body for i in g.layers}
        steps: list[PathStep] = []
        adapter_keep = spec.keep_fraction if spec.prune_adapter else 1.0
        for i, m in enumerate(self._adapter(task)):
            steps.append(self._step(f"adapters.{task}.{i}", m, task, adapter_keep))
        if self.body is not None:
            groups = [g for g in self.spec.shared if task in g.tasks]
            for name, m in self.body.named_modules():
                if _is_multitask(m):
                    key = f"body.{name}"
                    group = next((g for g in groups if g.covers(key)), None)
                    sub, keep = (group.name, group.keep_fraction) if group else (task, spec.keep_fraction)
                    steps.append(self._step(key, m, sub, keep))
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
        if isinstance(module, PerSubnetwork):
            return PathStep(key, module, subnetwork, 1.0)
        return PathStep(key, module, None, None)

    def multitask_layers(self) -> Iterator[tuple[str, MultitaskKernelLayer]]:
        """Every multitask layer with its key (``trunk.3``, ``adapters.boston.0``, ``heads.mnist.0``)."""
        for name, module in self.named_modules():
            if isinstance(module, MultitaskKernelLayer):
                yield name, module

    def per_subnetwork_layers(self) -> Iterator[tuple[str, PerSubnetwork]]:
        """Every layer holding one module copy per subnetwork (normalization, dense-per-task parts)."""
        for name, module in self.named_modules():
            if isinstance(module, PerSubnetwork):
                yield name, module

    def body_state(self) -> dict[str, Tensor]:
        """The converted body's tensors that belong to no subnetwork (modules kept ``shared_frozen``),
        by their names in ``body.state_dict()``."""
        if self.body is None:
            return {}
        owned = [f"{name}." if name else "" for name, m in self.body.named_modules() if _is_multitask(m)]
        return {
            k: v
            for k, v in self.body.state_dict().items()
            if not any(k.startswith(p) for p in owned) and not k.endswith("_extra_state")
        }

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
            step.subnetwork in _subnetworks(step.module) for step in self.path(task) if step.subnetwork is not None
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

    def read_fraction(self, task: str) -> float:
        """Measured share of the pruned layers' positions on the task's path that its subnetworks read
        of earlier frozen ones (forward transfer; 0 without), beside the :meth:`kept_fraction` they own."""
        read = total = 0
        for step in self.path(task):
            layer = step.module
            if isinstance(layer, MultitaskKernelLayer) and step.keep_fraction is not None and step.keep_fraction < 1:
                reads = layer.reads(step.subnetwork) if step.subnetwork in layer.subnetworks else None
                read += 0 if reads is None else int(reads.sum())
                total += layer.total_positions
        return read / total if total else 0.0

    def task_modules(self, task: str) -> list[tuple[str, nn.Module]]:
        """The task's own modules that are not multitask layers (embeddings), with their keys."""
        out = []
        for prefix, modules in (("adapters", self._adapter(task)), ("heads", self._head(task))):
            for i, m in enumerate(modules):
                if not isinstance(m, MultitaskKernelLayer) and any(True for _ in m.parameters()):
                    out.append((f"{prefix}.{task}.{i}", m))
        return out

    # ----------------------------------------------------------------- forward
    def forward(self, x: Tensor, task: str | None = None) -> Tensor:
        """Run task ``task`` on a batch ``x``; only its subnetworks' positions are used.

        ``task`` defaults to the active one (``with net.task(name): net(x)``); ``net(x, task=name)``
        is the shorthand for one call.
        """
        if task is None:
            route = active_route()
            if route is None or route.task is None:
                raise TaskError(
                    f"no active task: call net(x, task=name) or use `with net.task(name):`; tasks: {self.task_names}"
                )
            task = route.task
        else:
            route = None
        if task not in self.heads:
            raise TaskError(f"unknown task {task!r}; tasks: {self.task_names}")
        if route is None or route.task != task:
            route = self.route(task)
        if not isinstance(x, Tensor):
            raise TaskError(f"task {task!r}: input must be a torch.Tensor, got {type(x).__name__} (torch.as_tensor(x))")
        spec = self.task_spec(task)
        if x.dim() != len(spec.input_shape) + 1 or tuple(x.shape[1:]) != spec.input_shape:
            raise TaskError(
                f"task {task!r} takes input of shape (N, {', '.join(map(str, spec.input_shape))}), got {tuple(x.shape)}"
            )
        if spec.takes_tokens != (not x.dtype.is_floating_point):
            want = "int64 token ids" if spec.takes_tokens else "floating-point values"
            raise TaskError(f"task {task!r} takes {want}, got {x.dtype}")
        if active_route() is route:
            return self._run(task, x)
        with routed(route):
            return self._run(task, x)

    def compile_task(self, task: str, **options: Any) -> Callable[[Tensor], Tensor]:
        """Task ``task``'s forward compiled by :func:`torch.compile` (``options`` passed on), for training
        or inference: ``step = net.compile_task("a"); loss = f(step(x))``.

        Each task gets a function of its own, so TorchDynamo keeps one graph per task and a network of
        many tasks never reaches its recompile limit (which counts per function). The function reads
        the network's current weights, masks and freezing at every call; compile it again after
        :meth:`add_tasks`. Calls are not isolated per thread (the route is a module global while it
        runs); the eager ``net(x, task=...)`` is.
        """
        self.task_spec(task)
        route = self.route(task)
        code = _run_task.__code__.replace(co_name=f"rsn2_task_{task}")  # one Dynamo cache per task
        compiled = torch.compile(types.FunctionType(code, _run_task.__globals__, code.co_name), **options)

        def run(x: Tensor) -> Tensor:
            with compiled_route(route):
                return cast(Tensor, compiled(self, task, x))

        return run

    def _run(self, task: str, x: Tensor) -> Tensor:
        """Adapter, body or trunk (from ``enter_at``), head of ``task``, under the active route."""
        for m in self._adapter(task):
            x = m(x)
        if self.body is not None:
            x = self.body(x)
        for i in range(self.spec.task(task).enter_at, len(self.trunk)):
            x = self.trunk[i](x)
        for m in self._head(task):
            x = m(x)
        return x

    def superposed(self, x: Tensor, tasks: Sequence[str], coefficients: Tensor) -> Tensor:
        """The superposition of ``tasks`` on a batch ``x``: every multitask layer of the trunk or body
        computes with ``sum_k coefficients[k] * kernel_k`` (each task's subnetwork as it reads it), each
        per-subnetwork layer sums its copies' outputs so weighted, and the output is
        ``sum_k coefficients[k] * head_k(features)`` (adapters, where a task has one, likewise).

        Shape: ``x`` ``(N, *input_shape)`` of every task; ``coefficients`` ``(K,)``, may require a
        gradient; output ``(N, width)``. The tasks must share the input shape, the trunk entry and the
        output width. What SupSup's one-shot task inference differentiates
        (:mod:`rsn2.network.task_inference`).
        """
        if not tasks or coefficients.shape != (len(tasks),):
            raise TaskError(
                f"superposed needs K >= 1 tasks and coefficients of shape (K,), got {len(tasks)} tasks "
                f"and {tuple(coefficients.shape)}"
            )
        specs = [self.task_spec(t) for t in tasks]
        for what, values in (
            ("input shape", {str(s.input_shape) for s in specs}),
            ("trunk entry (enter_at)", {str(s.enter_at) for s in specs}),
            ("output width", {str(s.outputs) for s in specs}),
        ):
            if len(values) != 1:
                raise TaskError(f"tasks {list(tasks)} cannot be superposed: they differ in {what} ({sorted(values)})")
        parts: dict[nn.Module, list[tuple[str, int]]] = {}
        for k, task in enumerate(tasks):
            for step in self.path(task):
                if step.subnetwork is not None and not step.key.startswith(("adapters.", "heads.")):
                    parts.setdefault(step.module, []).append((step.subnetwork, k))
        mixture = Route(None, {}, mixture=Mixture({m: tuple(p) for m, p in parts.items()}, coefficients))
        if any(len(self._adapter(t)) for t in tasks):
            x = sum(c * self._each(self._adapter(t), t, x) for t, c in zip(tasks, coefficients, strict=True))
        with routed(mixture):
            if self.body is not None:
                x = self.body(x)
            for i in range(specs[0].enter_at, len(self.trunk)):
                x = self.trunk[i](x)
        return cast(Tensor, sum(c * self._each(self._head(t), t, x) for t, c in zip(tasks, coefficients, strict=True)))

    def _each(self, modules: nn.ModuleList, task: str, x: Tensor) -> Tensor:
        """``modules`` (an adapter or a head) run in order under ``task``'s own route."""
        with routed(self.route(task)):
            for m in modules:
                x = m(x)
        return x

    def infer_task(
        self, x: Tensor, *, method: str = "entropy", per: str = "sample", tasks: Sequence[str] | None = None
    ) -> TaskGuess:
        """Which task each sample of ``x`` (or the whole batch, ``per="batch"``) belongs to, with a
        confidence: ``guess = net.infer_task(x); guess.tasks(threshold=0.5)``. See
        :mod:`rsn2.network.task_inference` for the rules (``"entropy"``, ``"one-shot"``)."""
        return infer_task(self, x, method=method, per=per, tasks=tasks)

    def forward_many(self, batches: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Run several tasks in one call: ``{task: batch}`` in, ``{task: output}`` out."""
        return {task: self(x, task) for task, x in batches.items()}

    def predict_proba(self, x: Tensor, task: str) -> Tensor:
        """Class probabilities (softmax of the logits) of a classification task, no gradient."""
        if self.task_spec(task).kind != "classification":
            raise TaskError(f"task {task!r} is a regression task; predict_proba needs classification")
        with torch.no_grad():
            return torch.softmax(self(x, task), dim=-1)

    def ensemble(self, x: Tensor, tasks: Sequence[str]) -> Tensor:
        """Average of the softmax outputs of several subnetworks trained on the same task.

        Shape: ``(N, classes)``. All ``tasks`` must be classification tasks with the same number of
        classes (Experiment 1, docs/experiments.md).
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
        layers: list[MultitaskKernelLayer | PerSubnetwork] = [m for _, m in self.multitask_layers()]
        layers += [m for _, m in self.per_subnetwork_layers()]
        for layer in layers:
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


def _is_multitask(module: nn.Module) -> bool:
    """Whether ``module`` holds parts per subnetwork (a kernel layer or per-subnetwork copies)."""
    return isinstance(module, (MultitaskKernelLayer, PerSubnetwork))


def _subnetworks(module: nn.Module) -> list[str]:
    """The subnetworks registered in a multitask layer or per-subnetwork layer (empty otherwise)."""
    return cast(list[str], getattr(module, "subnetworks", []))


def _run_task(network: MultitaskNetwork, task: str, x: Tensor) -> Tensor:
    """What :meth:`MultitaskNetwork.compile_task` compiles (a copy of this function per task)."""
    return network._run(task, x)
