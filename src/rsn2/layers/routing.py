"""Which subnetwork each multitask layer reads: state set around a forward pass, not an argument.

A multitask layer's ``forward(x)`` takes only its input, like the module it replaces, so it fits
``nn.Sequential``, residual blocks and any user ``forward``. What it reads comes from the *active
route*: a mapping from layer to subnetwork name, held in a :class:`contextvars.ContextVar`, so that
threads (a server's workers) and asyncio tasks each see their own route. A network sets the route
of a task around its forward pass (:meth:`rsn2.MultitaskNetwork.task`); tests and tools can set one
for single layers with :func:`reading`.

A route may also name *candidate* layers: there the new subnetwork reads every free position (what
gradient selection scores, :mod:`rsn2.selection.importance`), and, for forward transfer, every
frozen position too (``transfer``).

A route may instead be a *superposition* (:class:`Mixture`): every layer reads a weighted sum of
several subnetworks, with the weights a tensor that may require a gradient (task inference by
SupSup's one-shot rule, :mod:`rsn2.network.task_inference`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from torch import nn

from rsn2.errors import TaskError


@dataclass(frozen=True)
class Mixture:
    """A superposition of subnetworks: each layer computes with ``sum_k coefficients[k] * kernel_k``.

    Attributes:
        parts: layer (by identity) -> ``(subnetwork, k)`` pairs: the layer reads ``subnetwork``
            (frozen values where frozen, its read set included) weighted by ``coefficients[k]``.
        coefficients: shape ``(K,)``, one weight per superposed task (may require a gradient).
    """

    parts: Mapping[nn.Module, tuple[tuple[str, int], ...]]
    coefficients: torch.Tensor


@dataclass(frozen=True)
class Route:
    """The subnetwork each layer reads for one task.

    Attributes:
        task: the task whose forward pass this is (None for a route set by hand on single layers).
        subnetworks: layer (by identity) -> subnetwork name it reads.
        candidates: layers where the subnetwork is new and reads all free positions (selection).
        transfer: candidate layers where it also reads every frozen subnetwork's positions.
        mixture: a superposition instead of one subnetwork per layer (``subnetworks`` is then empty).
    """

    task: str | None
    subnetworks: Mapping[nn.Module, str]
    candidates: frozenset[nn.Module] = field(default_factory=frozenset)
    transfer: frozenset[nn.Module] = field(default_factory=frozenset)
    mixture: Mixture | None = None


_ACTIVE: ContextVar[Route | None] = ContextVar("rsn2_active_route", default=None)

_COMPILED: Route | None = None
"""The route of the compiled per-task function being called (:func:`compiled_route`): what layers read
while TorchDynamo traces them, since it cannot trace a ``ContextVar``. A module global, so a
compiled call is not isolated per thread as the eager path is."""


def active_route() -> Route | None:
    """The route of the forward pass running in this thread or asyncio task, if any.

    While TorchDynamo traces a function compiled by :meth:`MultitaskNetwork.compile_task`, its
    task's route (a module global, traced without a graph break); in any other compiled code the
    ``ContextVar`` (a graph break: that call runs eagerly, and right)."""
    if torch.compiler.is_compiling() and _COMPILED is not None:
        return _COMPILED
    return _ACTIVE.get()


@contextmanager
def compiled_route(route: Route) -> Iterator[Route]:
    """Make ``route`` active for a call of a compiled per-task function: for the traced graph (a
    module global Dynamo guards on) and for any part that runs eagerly (the ``ContextVar``)."""
    global _COMPILED
    before, _COMPILED = _COMPILED, route
    try:
        with routed(route):
            yield route
    finally:
        _COMPILED = before


def subnetwork_for(layer: nn.Module) -> tuple[str, bool]:
    """``(subnetwork, reads_free)`` the active route gives ``layer``.

    Raises:
        TaskError: no route is active (the layer was called outside ``with net.task(name)``), or the
            active task does not run through this layer.
    """
    route = active_route()
    if route is None:
        raise TaskError(
            f"{type(layer).__name__} was called with no active task; run the network inside "
            "`with net.task(name):` (or call net(x, task=name))"
        )
    try:
        name = route.subnetworks[layer]
    except KeyError:
        who = f"task {route.task!r}" if route.task is not None else "the active route"
        raise TaskError(f"{type(layer).__name__} is not on the path of {who}") from None
    return name, layer in route.candidates


def mixture_for(layer: nn.Module) -> list[tuple[str, torch.Tensor]] | None:
    """``[(subnetwork, coefficient), ...]`` when the active route is a superposition, else None.

    Raises:
        TaskError: the superposition does not run through ``layer``.
    """
    route = active_route()
    if route is None or route.mixture is None:
        return None
    try:
        parts = route.mixture.parts[layer]
    except KeyError:
        raise TaskError(f"{type(layer).__name__} is not on the path of the superposed tasks") from None
    return [(name, route.mixture.coefficients[k]) for name, k in parts]


def reads_frozen(layer: nn.Module) -> bool:
    """Whether the active route's candidate at ``layer`` also reads frozen positions (``transfer``)."""
    route = active_route()
    return route is not None and layer in route.transfer


@contextmanager
def routed(route: Route) -> Iterator[Route]:
    """Make ``route`` the active one inside the ``with`` block (restored on exit, even on error)."""
    token = _ACTIVE.set(route)
    try:
        yield route
    finally:
        _ACTIVE.reset(token)


def reading(subnetworks: Mapping[nn.Module, str]) -> AbstractContextManager[Route]:
    """Run single layers as given subnetworks: ``with reading({layer: "a"}): y = layer(x)``."""
    return routed(Route(None, dict(subnetworks)))
