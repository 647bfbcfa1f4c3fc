"""The continual-learning metrics against hand-computed examples."""

import math

import pytest

from rsn2.errors import SpecError
from rsn2.metrics import (
    average_accuracy,
    average_forgetting,
    backward_transfer,
    forward_transfer,
    learning_accuracy,
)

NAN = math.nan
# three tasks; rows: after stage 0, 1, 2. Above the diagonal: the metric before the task was trained.
R = [
    [0.90, 0.20, 0.10],
    [0.80, 0.95, 0.30],
    [0.70, 0.85, 0.60],
]


def test_hand_computed_values():
    assert average_accuracy(R) == pytest.approx((0.70 + 0.85 + 0.60) / 3)
    assert backward_transfer(R) == pytest.approx(((0.70 - 0.90) + (0.85 - 0.95)) / 2)  # -0.15
    assert forward_transfer(R, [0.10, 0.10, 0.10]) == pytest.approx(((0.20 - 0.10) + (0.30 - 0.10)) / 2)
    # forgetting: task 0 best 0.90 (after stage 0), ends 0.70 -> 0.20; task 1 best 0.95 -> 0.10
    assert average_forgetting(R) == pytest.approx((0.20 + 0.10) / 2)
    assert learning_accuracy(R) == pytest.approx((0.90 + 0.95 + 0.60) / 3)


def test_a_method_that_never_forgets_has_zero_bwt_and_forgetting_exactly():
    r = [[0.9, NAN, NAN], [0.9, 0.8, NAN], [0.9, 0.8, 0.7]]
    assert backward_transfer(r) == 0.0 and average_forgetting(r) == 0.0
    assert average_accuracy(r) == pytest.approx(0.8) and learning_accuracy(r) == pytest.approx(0.8)


def test_forgetting_takes_the_best_earlier_value_not_the_first():
    r = [[0.5, NAN, NAN], [0.9, 0.8, NAN], [0.6, 0.8, 0.7]]  # task 0 improved, then fell
    assert average_forgetting(r) == pytest.approx(((0.9 - 0.6) + 0.0) / 2)
    assert backward_transfer(r) == pytest.approx(((0.6 - 0.5) + 0.0) / 2)


def test_one_task_and_bad_input():
    assert backward_transfer([[0.7]]) == 0.0 and average_forgetting([[0.7]]) == 0.0
    assert forward_transfer([[0.7]], [0.1]) == 0.0
    with pytest.raises(SpecError, match="T x T"):
        average_accuracy([[0.1, 0.2]])
    with pytest.raises(SpecError, match="finite on and below its diagonal"):
        average_accuracy([[0.1, NAN], [NAN, 0.2]])
    with pytest.raises(SpecError, match="one value per task"):
        forward_transfer(R, [0.1])
    with pytest.raises(SpecError, match=r"needs R\[j-1\]\[j\]"):
        forward_transfer([[0.9, NAN], [0.9, 0.8]], [0.1, 0.1])
