"""Make a user's ``nn.Module`` multitask: swap its layers for multitask ones, refuse what cannot be.

A mapping from module type to its multitask form, applied recursively (as ``torch.ao.quantization``
does): :data:`CONVERSIONS` is both the code and the list of what is supported. Every other module
that holds parameters or buffers is refused unless the caller marks it ``shared_frozen`` (kept as it
is, never trained) or ``dense_per_task`` (one full copy per task). Nothing is changed before every
module has been checked.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from rsn2.errors import SpecError
from rsn2.layers import MultitaskKernelLayer, MultitaskMultiheadAttention, PerSubnetwork
from rsn2.layers.conversions import CONVERSIONS
from rsn2.network.model import MultitaskNetwork
from rsn2.network.spec import NetworkSpec, SharedSubnetwork, TaskSpec

SUPPORTED = ", ".join(f"nn.{t.__name__}" for t in CONVERSIONS)


def multitask(
    model: nn.Module,
    tasks: Sequence[TaskSpec],
    *,
    shared_frozen: Iterable[str] = (),
    dense_per_task: Iterable[str] = (),
    shared: Sequence[SharedSubnetwork] = (),
    inplace: bool = False,
) -> MultitaskNetwork:
    """Make ``model`` a multitask network whose ``tasks`` each train their own disjoint subnetwork.

    Every :data:`CONVERSIONS` module of ``model`` is swapped for its multitask form (weights copied);
    ``model``'s own ``forward`` runs unchanged, each layer reading the active task's subnetwork
    (``with net.task(name): net(x)``, or ``net(x, task=name)``). Select and train the tasks with
    :func:`rsn2.fit_stage` (or :func:`rsn2.select_subnetworks` and :func:`rsn2.train_stage`); later
    tasks are added with :meth:`MultitaskNetwork.add_tasks`.

    Args:
        model: the network to convert; copied first unless ``inplace``.
        tasks: the first stage's tasks. Their ``head`` and ``adapter`` (layer specs, optional) run
            after and before ``model``; with no head, ``model``'s output is the task's output.
            ``keep_fraction`` applies to every kernel inside ``model``.
        shared_frozen: names (as in ``model.named_modules()``) of modules kept as they are and never
            trained (their parameters stop requiring gradients), e.g. a pretrained stem.
        dense_per_task: names of modules held once per task, wholly trainable by it (any module).
        shared: groups of ``tasks`` that read and train ONE subnetwork in some modules, named by
            their keys ``"body"`` (the whole model) or ``"body.<module name>"``
            (:class:`SharedSubnetwork`); elsewhere each task keeps its own.
        inplace: convert ``model`` itself instead of a copy.

    Raises:
        SpecError: a module holds parameters or buffers and is neither convertible nor marked; a
            module is used with arguments its multitask form does not support; a converted
            module's parameter is read outside that module's forward (tied weights, a parent reading
            ``self.fc.weight``); a given name is unknown. All problems are listed; ``model`` is
            unchanged.
    """
    if not isinstance(model, nn.Module):
        raise SpecError(f"multitask() converts a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, MultitaskNetwork):
        raise SpecError("this model is already a MultitaskNetwork; add tasks with net.add_tasks(...)")
    if not tasks:
        raise SpecError("multitask() needs at least one task (rsn2.TaskSpec)")
    spec = NetworkSpec((), tasks, shared)  # task names and shared groups checked before anything changes
    frozen_names, dense_names = set(shared_frozen), set(dense_per_task)
    names = dict(model.named_modules())
    unknown = sorted((frozen_names | dense_names) - set(names))
    if unknown:
        raise SpecError(f"no module named {unknown} in the model; modules: {sorted(n for n in names if n)[:20]}")
    if "" in frozen_names | dense_names:
        raise SpecError("shared_frozen and dense_per_task name submodules, not the whole model")
    plan, problems = _plan(model, frozen_names, dense_names)
    problems += _tied_parameters(model)
    if problems:
        raise SpecError("cannot make this model multitask:\n  - " + "\n  - ".join(problems))
    problems += _unshareable(plan, shared)
    if problems:
        raise SpecError("cannot make this model multitask:\n  - " + "\n  - ".join(problems))
    problems = _used_outside(model, plan, tasks[0])
    if problems:
        raise SpecError("cannot make this model multitask:\n  - " + "\n  - ".join(problems))
    body = model if inplace else copy.deepcopy(model)
    body_modules = dict(body.named_modules())
    replacements = {}
    for name, how in plan.items():  # every replacement made before the model is touched
        original = body_modules[name]
        if how == "frozen":
            continue
        try:
            replacements[name] = PerSubnetwork(original) if how == "dense" else CONVERSIONS[type(original)](original)
        except SpecError as exc:
            raise SpecError(f"cannot make this model multitask: module {name!r}: {exc}") from None
    for name, how in plan.items():
        if how == "frozen":
            body_modules[name].requires_grad_(False)
    for name, new in replacements.items():
        if name:
            _set_submodule(body, name, new)
        else:  # the model itself is one convertible layer
            body = new
    for module in body.modules():
        if isinstance(module, nn.TransformerEncoder):
            module.use_nested_tensor = False  # its nested-tensor path reads the attention's fused weights
    network = MultitaskNetwork(spec, body=body)
    network.conversion = {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "shared_frozen": sorted(frozen_names),
        "dense_per_task": sorted(dense_names),
    }
    return network


def _unshareable(plan: Mapping[str, str], shared: Sequence[SharedSubnetwork]) -> list[str]:
    """Problems with the body keys of ``shared`` groups: each must name a module of the model that
    is, or holds, a converted one."""
    converted = [name for name, how in plan.items() if how != "frozen"]
    problems = []
    for group in shared:
        if not group.in_body:
            problems.append(
                f"shared subnetwork {group.name!r} names trunk layers {list(group.layers)}; name modules "
                "of the model instead ('body' or 'body.<module name>')"
            )
            continue
        for key in group.layers:
            assert isinstance(key, str)
            name = key.removeprefix("body").removeprefix(".")
            if not any(not name or p == name or p.startswith(f"{name}.") for p in converted):
                problems.append(
                    f"shared subnetwork {group.name!r}: {key!r} is not a module that is or holds a converted "
                    f"layer (converted: {['body.' + p if p else 'body' for p in converted][:12]})"
                )
    return problems


def _plan(model: nn.Module, frozen: set[str], dense: set[str]) -> tuple[dict[str, str], list[str]]:
    """``{module name: "convert" | "frozen" | "dense"}`` and the problems found, walking from the root."""
    plan: dict[str, str] = {}
    problems: list[str] = []

    def walk(prefix: str, module: nn.Module) -> None:
        if isinstance(module, (MultitaskKernelLayer, PerSubnetwork, MultitaskMultiheadAttention)):
            problems.append(f"{prefix or 'the model'} is already a multitask layer ({type(module).__name__})")
            return
        if prefix in frozen:
            plan[prefix] = "frozen"
            return
        if prefix in dense:
            plan[prefix] = "dense"
            return
        if type(module) in CONVERSIONS:
            plan[prefix] = "convert"
            return
        own = [n for n, p in module._parameters.items() if p is not None]
        own += [n for n, b in module._buffers.items() if b is not None]
        if own:
            problems.append(
                f"{prefix or 'the model'} ({type(module).__name__}) holds {own} and is not supported: "
                f"supported are {SUPPORTED}; mark it shared_frozen=[{prefix!r}] (never trained) or "
                f"dense_per_task=[{prefix!r}] (one copy per task)"
            )
        for child_name, child in module.named_children():
            walk(f"{prefix}.{child_name}" if prefix else child_name, child)

    walk("", model)
    return plan, problems


def _tied_parameters(model: nn.Module) -> list[str]:
    """A parameter registered under two names (tied weights) cannot be split per module."""
    seen: dict[int, str] = {}
    problems = []
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            problems.append(
                f"parameter {name!r} is the same tensor as {seen[id(p)]!r} (tied weights are not supported)"
            )
        else:
            seen[id(p)] = name
    return problems


class _ParameterReads(TorchFunctionMode):
    """Records every read of a watched parameter made while its module's forward is not running."""

    def __init__(self, owner_of: Mapping[int, tuple[str, str]], running: list[str]) -> None:
        super().__init__()
        self.owner_of = owner_of
        self.running = running
        self.problems: dict[str, str] = {}

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        for t in tree_flatten((args, kwargs))[0]:
            if isinstance(t, Tensor) and id(t) in self.owner_of:
                module, param = self.owner_of[id(t)]
                if module not in self.running and param not in self.problems:
                    where = self.running[-1] if self.running else "the top level"
                    self.problems[param] = (
                        f"parameter {param!r} is read outside {module!r}'s forward (in {where or 'the model'}); "
                        f"its multitask form would bypass the task's subnetwork there: mark {module!r} "
                        "shared_frozen or dense_per_task, or read it inside that module"
                    )
        return func(*args, **kwargs)


def _used_outside(model: nn.Module, plan: Mapping[str, str], task: TaskSpec) -> list[str]:
    """Run a copy of ``model`` once (train mode, a zero batch of ``task``'s input) and list the
    parameters of modules to convert that are read while their module's forward is not running."""
    if task.adapter:
        return []  # the body's input is the adapter's output: no sample to probe with before building
    probe = copy.deepcopy(model).train()
    modules = dict(probe.named_modules())
    owner_of = {
        id(p): (name, f"{name}.{pname}" if name else pname)
        for name, how in plan.items()
        if how == "convert"
        for pname, p in modules[name].named_parameters()
    }
    running: list[str] = []
    handles = []

    def enter(name: str) -> Callable[..., None]:
        return lambda *_: running.append(name)

    def leave(*_: Any) -> None:
        running.pop()

    for name, module in probe.named_modules():
        handles.append(module.register_forward_pre_hook(enter(name)))
        handles.append(module.register_forward_hook(leave, always_call=True))
    dtype = torch.long if task.takes_tokens else torch.float32
    reads = _ParameterReads(owner_of, running)
    try:
        with reads:
            probe(torch.zeros((2, *task.input_shape), dtype=dtype))
    except Exception as exc:  # the model's own error, reported with the task's input
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [f"the model does not run on task {task.name!r}'s input of shape {task.input_shape}: {first}"]
    finally:
        for h in handles:
            h.remove()
    return list(reads.problems.values())


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)
