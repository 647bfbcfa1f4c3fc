"""Class-incremental evaluation: each test sample's task found without its name.

After the last stage, every test sample of every task is run through every task's subnetwork (or
head, for the dense baselines) and its task inferred (:mod:`rsn2.network.task_inference`):

- task identification: the fraction of answers naming the sample's own task, per sample (batch of 1)
  and per batch of 16 and 128 consecutive test samples of one task (the batch's mean entropy);
- class-incremental accuracy: the fraction of samples whose inferred task is right *and* whose class,
  read from that task's output, is right (the class among every task's classes).

Per sample, also how many answers clear each confidence threshold of :data:`THRESHOLDS` (the rest
would be "unknown task") and how many of those name the right task. Each as the mean over tasks
(each task's test set weighs the same, as in ACC), for the exact ``"entropy"`` rule at every batch
size and for SupSup's ``"one-shot"`` rule per batch (on the first :data:`ONE_SHOT_SAMPLES` test
samples of each task: one backward pass per batch), with the seconds each rule took per sample.
Accuracies are in percent.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from rsn2.continual.streams import ContinualTask
from rsn2.network import MultitaskNetwork
from rsn2.network.task_inference import DEFAULT_THRESHOLD, choose, normalized_entropy, one_shot_rates

BATCH_SIZES = (1, 16, 128)
"""Answers per sample and per batch of 16 and 128 test samples of one task."""

ONE_SHOT_BATCHES = (16, 128)
"""The one-shot rule answers per batch only."""

ONE_SHOT_SAMPLES = 2048
"""Test samples per task the one-shot rule is evaluated on (its cost is one backward pass per batch)."""

THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.3)
"""Confidence thresholds the per-sample answers are counted at (the serving default among them)."""


def identification_report(network: MultitaskNetwork, tasks: Sequence[ContinualTask]) -> dict[str, Any]:
    """Task identification and class-incremental accuracy of ``network`` over ``tasks``' test sets
    (see the module docstring). ``network`` is left unchanged (run in eval mode)."""
    names = [t.name for t in tasks]
    was_training = network.training
    network.eval()
    try:
        started = time.perf_counter()
        outputs = [_all_outputs(network, names, t.x_test) for t in tasks]
        entropy_seconds = time.perf_counter() - started
        entropy = {
            "task_id": {str(b): 0.0 for b in BATCH_SIZES},
            "class_incremental": {str(b): 0.0 for b in BATCH_SIZES},
        }
        for j, (task, (scores, predicted)) in enumerate(zip(tasks, outputs, strict=True)):
            for b in BATCH_SIZES:
                ident, cil = _score_batches(scores, predicted, task.y_test, j, b)
                entropy["task_id"][str(b)] += ident / len(tasks)
                entropy["class_incremental"][str(b)] += cil / len(tasks)
        samples = sum(t.x_test.shape[0] for t in tasks)
        report: dict[str, Any] = {
            "tasks": len(tasks),
            "entropy": {**_rounded(entropy), "seconds_per_sample": entropy_seconds / samples},
            "thresholds": _thresholded(outputs),
        }
        if len(tasks) > 1 and _superposable(network, names):
            report["one-shot"] = _one_shot(network, tasks, outputs)
        return report
    finally:
        network.train(was_training)


def _all_outputs(network: MultitaskNetwork, names: Sequence[str], x: Tensor) -> tuple[Tensor, Tensor]:
    """``(entropies, predicted)``, both ``(K, N)``: each task's normalized entropy and class on ``x``."""
    entropies, predicted = [], []
    with torch.no_grad():
        for name in names:
            out = torch.cat([network(x[i : i + 1024], task=name) for i in range(0, x.shape[0], 1024)])
            entropies.append(normalized_entropy(out))
            predicted.append(out.argmax(-1).cpu())
    return torch.stack(entropies), torch.stack(predicted)


def _score_batches(scores: Tensor, predicted: Tensor, y: Tensor, own: int, batch: int) -> tuple[float, float]:
    """Identification and class-incremental accuracy (percent) of task ``own``'s test samples answered
    per consecutive batch of ``batch`` (the last may be shorter)."""
    n = scores.shape[1]
    starts = torch.arange(0, n, batch)
    sums = torch.stack([scores[:, s : s + batch].mean(1) for s in starts.tolist()], dim=1)  # (K, batches)
    chosen, _ = choose(sums)
    per_sample = chosen.repeat_interleave(torch.diff(torch.cat([starts, torch.tensor([n])])))
    right_task = per_sample == own
    right_class = predicted[per_sample, torch.arange(n)] == y.cpu()
    return 100.0 * float(right_task.float().mean()), 100.0 * float((right_task & right_class).float().mean())


def _thresholded(outputs: Sequence[tuple[Tensor, Tensor]]) -> dict[str, Any]:
    """Per-sample answers at each of :data:`THRESHOLDS`: the percentage of samples answered (not
    "unknown") and the percentage of the answered ones naming the right task, over all tasks."""
    chosen, confidence, own = [], [], []
    for j, (scores, _) in enumerate(outputs):
        index, conf = choose(scores)
        chosen.append(index)
        confidence.append(conf)
        own.append(torch.full_like(index, j))
    index, conf, truth = torch.cat(chosen), torch.cat(confidence), torch.cat(own)
    rows = {}
    for t in THRESHOLDS:
        kept = conf >= t
        right = float((index[kept] == truth[kept]).float().mean()) if kept.any() else float("nan")
        rows[str(t)] = {
            "answered": round(100.0 * float(kept.float().mean()), 4),
            "task_id_answered": round(100 * right, 4),
        }
    return {"default": DEFAULT_THRESHOLD, "at": rows}


def _one_shot(
    network: MultitaskNetwork, tasks: Sequence[ContinualTask], outputs: Sequence[tuple[Tensor, Tensor]]
) -> dict[str, Any]:
    names = [t.name for t in tasks]
    result: dict[str, Any] = {"task_id": {}, "class_incremental": {}, "samples_per_task": ONE_SHOT_SAMPLES}
    seconds, answered = 0.0, 0
    for b in ONE_SHOT_BATCHES:
        ident_total, cil_total = 0.0, 0.0
        for j, (task, (_, predicted)) in enumerate(zip(tasks, outputs, strict=True)):
            x, y = task.x_test[:ONE_SHOT_SAMPLES], task.y_test[:ONE_SHOT_SAMPLES].cpu()
            ident = cil = 0
            for s in range(0, x.shape[0], b):
                started = time.perf_counter()
                chosen = int(choose(one_shot_rates(network, x[s : s + b], names)[:, None], higher_is_better=True)[0])
                seconds += time.perf_counter() - started
                answered += min(b, x.shape[0] - s)
                if chosen == j:
                    ident += min(b, x.shape[0] - s)
                    cil += int((predicted[j, s : s + b] == y[s : s + b]).sum())
            ident_total += 100.0 * ident / x.shape[0] / len(tasks)
            cil_total += 100.0 * cil / x.shape[0] / len(tasks)
        result["task_id"][str(b)] = round(ident_total, 4)
        result["class_incremental"][str(b)] = round(cil_total, 4)
    result["seconds_per_sample"] = seconds / max(answered, 1)
    return result


def _superposable(network: MultitaskNetwork, names: Sequence[str]) -> bool:
    """Whether the one-shot rule applies: one input shape, trunk entry and output width for all."""
    specs = [network.task_spec(n) for n in names]
    return all(len({getattr(s, attr) for s in specs}) == 1 for attr in ("input_shape", "enter_at", "outputs")) and all(
        s.kind == "classification" for s in specs
    )


def _rounded(section: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {k: {b: round(v, 4) for b, v in inner.items()} for k, inner in section.items()}


__all__ = ["BATCH_SIZES", "ONE_SHOT_BATCHES", "ONE_SHOT_SAMPLES", "THRESHOLDS", "identification_report"]
