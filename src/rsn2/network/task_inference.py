"""Finding an input's task without its name: which task's subnetwork is least uncertain about it.

Two rules over a set of *candidate* tasks (classification tasks that take the input's shape):

- ``"entropy"`` (exact): run every candidate and score each by the normalized entropy of its output
  distribution, ``H(softmax(logits)) / log(classes)`` (0: certain, 1: uniform; normalized so that
  tasks with different class counts compare), and pick the lowest. ``K`` forward passes; rsn2's
  subnetworks are disjoint, so ``K`` packed per-task models together read about one dense model's
  weights.
- ``"one-shot"`` (SupSup, Wortsman et al., NeurIPS 2020): run the *superposition* of the candidates
  once, every multitask layer reading ``sum_k alpha_k * kernel_k`` with ``alpha_k = 1/K`` and the
  output ``sum_k alpha_k * head_k``, and pick the task whose coefficient lowers the output's entropy
  fastest (the largest ``-dH/dalpha_k``). One forward and one backward pass of a dense-sized
  network whatever ``K``; per batch only (a sample's own ``alpha`` would need kernels of its own),
  and the candidates' heads must have one width.

Per sample, or per batch (all samples assumed to come from one task: scores averaged over the
batch). Each answer has a *confidence* in ``[0, 1]``: for ``"entropy"`` the margin
``s_second - s_best`` between the runner-up's normalized entropy and the best task's. It is near 0
when two tasks are about equally sure (identical input distributions: both near 0, the guess a coin
toss; an input no task knows: both high) and large when one task is sure and every other is not.
For ``"one-shot"`` it is ``1 - g_second / g_best`` over the entropy decrease rates. Below a
threshold the answer is "unknown task" (``None``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from rsn2.errors import TaskError
from rsn2.network.modes import evaluating

if TYPE_CHECKING:
    from rsn2.network.model import MultitaskNetwork

METHODS = ("entropy", "one-shot")
"""The task-inference rules (see the module docstring)."""

DEFAULT_THRESHOLD = 0.1
"""The confidence below which ``rsn2 predict`` and ``rsn2 serve`` answer "unknown task": the runner-up's
normalized entropy must exceed the best task's by a tenth of the largest possible entropy (chosen by
the measurement in docs/continual.md, "Task inference")."""

PER = ("sample", "batch")
"""What one answer covers: each sample, or the whole batch (assumed to be of one task)."""


@dataclass(frozen=True)
class TaskGuess:
    """The inferred task of each sample (``per="sample"``) or of the batch (``per="batch"``).

    Attributes:
        candidates: the tasks considered, in score order (``scores``' first axis).
        index: shape ``(M,)`` int64, the chosen candidate per answer (``M`` = N samples, or 1).
        confidence: shape ``(M,)`` float in ``[0, 1]`` (see the module docstring).
        scores: shape ``(K, M)``: normalized entropies (``"entropy"``, lower is likelier) or entropy
            decrease rates ``-dH/dalpha`` (``"one-shot"``, higher is likelier).
        method: ``"entropy"`` or ``"one-shot"``.
        per: ``"sample"`` or ``"batch"``.
    """

    candidates: tuple[str, ...]
    index: Tensor
    confidence: Tensor
    scores: Tensor
    method: str
    per: str

    def tasks(self, threshold: float = 0.0) -> list[str | None]:
        """The chosen task name per answer, ``None`` ("unknown task") where confidence < ``threshold``."""
        check_threshold(threshold)
        return [
            self.candidates[int(i)] if float(c) >= threshold else None
            for i, c in zip(self.index, self.confidence, strict=True)
        ]


def normalized_entropy(logits: Tensor) -> Tensor:
    """``H(softmax(logits)) / log(C)`` per row: shape ``(N, C)`` -> ``(N,)``, values in ``[0, 1]``.

    One class (``C == 1``) is always certain: 0."""
    if logits.dim() != 2:
        raise TaskError(f"task inference needs logits of shape (N, classes), got {tuple(logits.shape)}")
    classes = logits.shape[-1]
    if classes < 2:
        return torch.zeros(logits.shape[0], dtype=torch.float32, device=logits.device)
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1) / math.log(classes)


def choose(scores: Tensor, *, higher_is_better: bool = False) -> tuple[Tensor, Tensor]:
    """``(index, confidence)`` per column of ``scores`` (shape ``(K, M)``): the best row and how far
    ahead of the runner-up it is, clamped to ``[0, 1]`` (1 for a single candidate): ``second - best``
    for normalized entropies (smaller is better), ``1 - second / best`` for rates (larger is better)."""
    if scores.dim() != 2 or scores.shape[0] < 1:
        raise TaskError(f"scores must have shape (candidates, answers), got {tuple(scores.shape)}")
    if scores.shape[0] == 1:
        return torch.zeros(scores.shape[1], dtype=torch.int64), torch.ones(scores.shape[1])
    ordered = scores.sort(dim=0, descending=higher_is_better)
    best, second = ordered.values[0], ordered.values[1]
    if higher_is_better:
        ratio = torch.where(best > 0, second.clamp(min=0) / best.clamp(min=1e-12), torch.ones_like(best))
        return ordered.indices[0], (1.0 - ratio).clamp(0.0, 1.0)
    return ordered.indices[0], (second - best).clamp(0.0, 1.0)


def entropy_guess(outputs: Mapping[str, Tensor], per: str = "sample") -> TaskGuess:
    """The ``"entropy"`` rule on each candidate's logits (``{task: (N, classes)}``, one N for all)."""
    _check_per(per)
    if not outputs:
        raise TaskError("task inference needs at least one candidate task")
    sizes = {t: out.shape[0] for t, out in outputs.items()}
    if len(set(sizes.values())) != 1:
        raise TaskError(f"every candidate's output must cover the same samples, got {sizes}")
    scores = torch.stack([normalized_entropy(out).cpu() for out in outputs.values()])
    if per == "batch":
        scores = scores.mean(dim=1, keepdim=True)
    index, confidence = choose(scores)
    return TaskGuess(tuple(outputs), index, confidence, scores, "entropy", per)


def candidate_tasks(network: MultitaskNetwork, x: Tensor, tasks: Sequence[str] | None = None) -> list[str]:
    """The classification tasks of ``network`` that take ``x`` (its sample shape and dtype kind),
    or ``tasks`` checked to be such.

    Raises:
        TaskError: a named task does not qualify, or no task does.
    """

    def takes(name: str) -> str | None:
        spec = network.task_spec(name)
        if spec.kind != "classification":
            return f"{name!r} is a {spec.kind} task (only classification outputs have an entropy)"
        if tuple(x.shape[1:]) != tuple(spec.input_shape):
            return f"{name!r} takes samples of shape {tuple(spec.input_shape)}, the input has {tuple(x.shape[1:])}"
        if spec.takes_tokens == x.dtype.is_floating_point:
            return f"{name!r} takes {'token ids' if spec.takes_tokens else 'floating-point values'}"
        if not network.is_selected(name):
            return f"{name!r} has no subnetwork yet (not selected)"
        return None

    if tasks is not None:
        problems = [p for p in (takes(t) for t in tasks) if p]
        if problems:
            raise TaskError("cannot infer among the given tasks: " + "; ".join(problems))
        if not tasks:
            raise TaskError("task inference needs at least one candidate task")
        return list(tasks)
    found = [t for t in network.task_names if takes(t) is None]
    if not found:
        raise TaskError(
            f"no classification task of this network takes samples of shape {tuple(x.shape[1:])} "
            f"({x.dtype}); tasks: {network.task_names}"
        )
    return found


def infer_task(
    network: MultitaskNetwork,
    x: Tensor,
    *,
    method: str = "entropy",
    per: str = "sample",
    tasks: Sequence[str] | None = None,
) -> TaskGuess:
    """Which of ``tasks`` (default: every classification task taking ``x``) each sample (or the
    batch) of ``x`` belongs to. Runs in eval mode (restored after) and changes nothing in
    ``network``. See the module docstring for the rules and the confidence."""
    if method not in METHODS:
        raise TaskError(f"unknown task-inference method {method!r}; choose one of {list(METHODS)}")
    _check_per(per)
    if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[0] < 1:
        raise TaskError("task inference needs a non-empty batch tensor of shape (N, ...)")
    names = candidate_tasks(network, x, tasks)
    with evaluating(network):
        if method == "entropy":
            with torch.no_grad():
                return entropy_guess({t: network(x, task=t) for t in names}, per)
        if per != "batch":
            raise TaskError('the "one-shot" rule answers per batch only (per="batch"); use "entropy" per sample')
        rates = one_shot_rates(network, x, names)
        index, confidence = choose(rates[:, None], higher_is_better=True)
        return TaskGuess(tuple(names), index, confidence, rates[:, None], "one-shot", "batch")


def one_shot_rates(network: MultitaskNetwork, x: Tensor, tasks: Sequence[str]) -> Tensor:
    """``-dH/dalpha_k`` at ``alpha = 1/K``: shape ``(K,)``, how fast each task's coefficient lowers the
    mean normalized entropy of the superposed output over the batch ``x`` (SupSup's one-shot rule)."""
    alpha = torch.full((len(tasks),), 1.0 / len(tasks), device=x.device, requires_grad=True)
    with torch.enable_grad():
        out = network.superposed(x, tasks, alpha)
        entropy = normalized_entropy(out).mean()
        (grad,) = torch.autograd.grad(entropy, alpha)
    return -grad.detach().cpu()


def _check_per(per: str) -> None:
    if per not in PER:
        raise TaskError(f"per must be one of {list(PER)}, got {per!r}")


def check_threshold(threshold: float) -> None:
    """Raise :class:`TaskError` unless ``0 <= threshold <= 1``."""
    if not 0.0 <= float(threshold) <= 1.0:
        raise TaskError(f"the confidence threshold must be in [0, 1], got {threshold}")


__all__ = [
    "DEFAULT_THRESHOLD",
    "METHODS",
    "PER",
    "TaskGuess",
    "candidate_tasks",
    "check_threshold",
    "choose",
    "entropy_guess",
    "infer_task",
    "normalized_entropy",
    "one_shot_rates",
]
