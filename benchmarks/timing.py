"""Side-by-side timing: candidates alternate within every round, so machine noise hits all alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    """Median seconds per call of each candidate, and the median per-round ratio to the baseline."""

    seconds: dict[str, float]
    speedup: dict[str, float]  # baseline time / candidate time, median over rounds


def _calls_for(fn: Callable[[], object], min_time: float) -> int:
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-6)
    return max(1, int(min_time / once))


def side_by_side(
    candidates: Mapping[str, Callable[[], object]], baseline: str, rounds: int = 7, min_time: float = 0.2
) -> Timing:
    """Time every candidate ``rounds`` times, alternating; each turn repeats a call for ``min_time``.

    The first call of each candidate is a warm-up (compilation, caches) and is not timed.
    """
    if baseline not in candidates:
        raise ValueError(f"baseline {baseline!r} is not among the candidates {list(candidates)}")
    for fn in candidates.values():
        fn()
    calls = {name: _calls_for(fn, min_time) for name, fn in candidates.items()}
    per_round: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            fn, n = candidates[name], calls[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            per_round[name].append((time.perf_counter() - start) / n)
    seconds = {name: statistics.median(v) for name, v in per_round.items()}
    speedup = {
        name: statistics.median(b / c for b, c in zip(per_round[baseline], v, strict=True))
        for name, v in per_round.items()
    }
    return Timing(seconds, speedup)


def synced(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``fn`` followed, on a CUDA device, by waiting for the device to finish its queued work (CUDA runs
    asynchronously, so without the wait a timer sees only the launches); elsewhere ``fn`` itself."""
    if device.type != "cuda":
        return fn

    def call() -> None:
        fn()
        torch.cuda.synchronize(device)

    return call
