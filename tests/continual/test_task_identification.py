"""Class-incremental evaluation: task identification and class-incremental accuracy per batch size."""

import pytest
import torch

from rsn2.continual.methods import run_method
from rsn2.continual.task_identification import BATCH_SIZES, ONE_SHOT_BATCHES, THRESHOLDS, _score_batches
from tests.continual.helpers_cl import tiny_config, tiny_stream


def test_scores_per_batch_count_the_right_task_and_the_right_class_of_it():
    # task 0's 4 samples; two candidate tasks; samples 0 and 3 lean to task 1 on their own
    scores = torch.tensor([[0.1, 0.2, 0.1, 0.9], [0.5, 0.6, 0.7, 0.1]])
    predicted = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0]])  # the class each task's head answers
    y = torch.tensor([1, 1, 1, 1])
    assert _score_batches(scores, predicted, y, own=0, batch=1) == pytest.approx((75.0, 50.0))
    assert _score_batches(scores, predicted, y, own=0, batch=4) == pytest.approx((100.0, 75.0))
    assert _score_batches(scores, predicted, y, own=1, batch=4) == pytest.approx((0.0, 0.0))
    ident, cil = _score_batches(scores, predicted, y, own=0, batch=3)  # batches [0:3] -> task 0, [3:4] -> task 1
    assert (ident, cil) == pytest.approx((75.0, 50.0))


@pytest.mark.parametrize("method", ["rsn2", "ewc"])
def test_multi_head_methods_record_task_inference_at_every_batch_size(method):
    stream = tiny_stream()
    report = run_method(method, tiny_config(), stream, seed=0).details["task_inference"]
    assert report["tasks"] == len(stream)
    entropy = report["entropy"]
    assert set(entropy["task_id"]) == {str(b) for b in BATCH_SIZES} == set(entropy["class_incremental"])
    for b in BATCH_SIZES:
        assert 0.0 <= entropy["class_incremental"][str(b)] <= entropy["task_id"][str(b)] <= 100.0
    assert set(report["one-shot"]["task_id"]) == {str(b) for b in ONE_SHOT_BATCHES}
    assert set(report["thresholds"]["at"]) == {str(t) for t in THRESHOLDS}
    answered = [report["thresholds"]["at"][str(t)]["answered"] for t in THRESHOLDS]
    assert answered == sorted(answered, reverse=True)  # a higher threshold never answers more
    assert entropy["seconds_per_sample"] > 0


def _report(cil_1, id_128):
    def stats(v):
        return {"values": [v], "mean": v, "std": 0.0}

    sizes = {b: stats(cil_1 if b == "1" else id_128) for b in ("1", "16", "128")}
    return {
        "entropy": {"task_id": sizes, "class_incremental": sizes, "microseconds_per_sample": stats(10.0)},
        "thresholds": {"default": 0.1, "at": {"0.1": {"answered": stats(50.0), "task_id_answered": stats(90.0)}}},
    }


@pytest.mark.parametrize(
    "bench,rows,line",
    [
        ("pmnist", {"rsn2": (90.0, 99.5)}, "per batch of 128 (rsn2, entropy): met (99.50)"),
        ("pmnist", {"rsn2": (90.0, 98.0)}, "per batch of 128 (rsn2, entropy): MISSED (98.00)"),
        ("split-mnist-negatives", {"rsn2": (79.9, 100.0)}, "per sample without old data (rsn2, entropy): MISSED"),
        ("split-mnist", {"rsn2": (80.0, 100.0)}, "per sample without old data (rsn2, entropy): met"),
        ("split-cifar10", {"rsn2": (45.0, 60.0), "ewc": (36.0, 50.0)}, "(rsn2, entropy): MISSED (45.00 vs 36.00)"),
        (
            "split-cifar10",
            {"rsn2": (47.0, 60.0), "ewc": (36.0, 50.0), "finetune": (20.0, 20.0)},
            "met (47.00 vs 36.00)",
        ),
    ],
)
def test_the_summary_states_each_task_inference_target_met_or_missed(bench, rows, line):
    from rsn2.continual.summary import task_inference_section

    results = {"methods": {m: {"task_inference": _report(*v)} for m, v in rows.items()}}
    text = "\n".join(task_inference_section(bench, results))
    assert line in text and "| rsn2 | entropy |" in text
