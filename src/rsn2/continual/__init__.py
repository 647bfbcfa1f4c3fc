"""Continual-learning benchmarks: task streams, rsn2 and its baselines on them, accuracy matrices.

One benchmark file (``benchmarks/cl/*.yaml``) names a stream of tasks (Permuted-MNIST, Split-MNIST,
...), the network, the training settings and the methods to compare. :func:`run_benchmark` trains
every method on the same stream, one task per stage with its own head (task-incremental), and writes
each run's accuracy matrix ``R`` with the metrics of :mod:`rsn2.metrics`.
"""

from rsn2.continual.config import METHODS, BenchmarkConfig, load_benchmark_config
from rsn2.continual.methods import MethodRun, run_method
from rsn2.continual.runner import run_benchmark
from rsn2.continual.streams import ContinualTask, build_stream

__all__ = [
    "METHODS",
    "BenchmarkConfig",
    "ContinualTask",
    "MethodRun",
    "build_stream",
    "load_benchmark_config",
    "run_benchmark",
    "run_method",
]
