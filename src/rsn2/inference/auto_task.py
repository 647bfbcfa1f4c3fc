"""Answers without a task name: each sample's task inferred from its candidates' outputs.

What ``rsn2 predict`` without ``--task`` and ``rsn2 serve``'s ``auto`` model share. The caller runs
each candidate task (a classification task whose preprocessing took the input) on the raw samples;
:func:`answers_without_task` picks each sample's task by the exact output-entropy rule
(:func:`rsn2.network.task_inference.entropy_guess`) and answers from that task's output, or
"unknown" where the confidence is below the threshold.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from rsn2.errors import TaskError
from rsn2.network.task_inference import DEFAULT_THRESHOLD, check_threshold, entropy_guess
from rsn2.preprocessing import Preprocessing
from rsn2.preprocessing.inputs import IOField

UNKNOWN = "unknown"
"""The task named in an answer whose confidence is below the threshold (its label is empty)."""

AUTO_OUTPUTS = (
    IOField("task", "BYTES", (-1,)),
    IOField("confidence", "FP32", (-1,)),
    IOField("label", "BYTES", (-1,)),
    IOField("probability", "FP32", (-1,)),
)
"""The answers without a task name, per sample (see :func:`answers_without_task`)."""


def answers_without_task(
    outputs: Mapping[str, np.ndarray],
    preprocessing: Mapping[str, Preprocessing],
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, np.ndarray]:
    """Per sample: ``task`` (object, a task name or :data:`UNKNOWN`), ``confidence`` (float32 in
    ``[0, 1]``), ``label`` (object: the class the chosen task answers, ``""`` for unknown) and
    ``probability`` (float32: that class's probability, 0 for unknown).

    ``outputs``: each candidate task's network outputs ``(N, classes)`` on the same N samples;
    ``preprocessing``: each candidate's (its class names).

    Raises:
        TaskError: no candidate, a candidate that is not a classification task, or outputs of
            different sample counts.
    """
    check_threshold(threshold)
    if not outputs:
        raise TaskError("no task takes this input, so none can be inferred")
    for task in outputs:
        if preprocessing[task].classes is None:
            raise TaskError(f"task {task!r} is a regression task; only classification tasks can be inferred")
    guess = entropy_guess({t: torch.from_numpy(np.asarray(o, dtype=np.float32)) for t, o in outputs.items()})
    chosen = guess.tasks(threshold)
    finished = {t: preprocessing[t].finish(o) for t, o in outputs.items()}
    labels = np.empty(len(chosen), dtype=object)
    probability = np.zeros(len(chosen), dtype=np.float32)
    for i, name in enumerate(chosen):
        if name is None:
            labels[i] = ""
            continue
        labels[i] = finished[name]["label"][i]
        probability[i] = finished[name]["probabilities"][i].max()
    return {
        "task": np.asarray([t if t is not None else UNKNOWN for t in chosen], dtype=object),
        "confidence": guess.confidence.numpy().astype(np.float32),
        "label": labels,
        "probability": probability,
    }


__all__ = ["AUTO_OUTPUTS", "UNKNOWN", "answers_without_task"]
