"""What one task of a continual-learning benchmark costs, before committing to the whole stream.

    python -m benchmarks.cl_task_cost benchmarks/cl/omniglot-rotation.yaml --data-dir ../shared/data \
        [--methods rsn2,rsn2-select,packnet] [--tasks 2] [--epochs 1] [--smoke]

Builds the benchmark's stream and network (its own module included) and runs each method on the
first ``--tasks`` tasks with the file's settings but ``--epochs`` epochs per task. Prints, per method,
the seconds of each stage (selection, the PackNet probe and retraining included), the parameters of
the network and the process's peak resident memory, and the CPU; the whole stream's cost is about
the stage time times the number of tasks times ``epochs in the file / --epochs``.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time

from rsn2.continual.config import load_benchmark_config
from rsn2.continual.methods import run_method
from rsn2.continual.networks import BenchmarkNetwork
from rsn2.continual.runner import benchmark_stream
from rsn2.devices import cpu_name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="benchmark YAML file")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: the file's)")
    parser.add_argument("--tasks", type=int, default=2, help="how many of the first tasks to run (default 2)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per task (default 1)")
    parser.add_argument("--smoke", action="store_true", help="256 training / 128 test samples per task")
    args = parser.parse_args(argv)
    config = load_benchmark_config(args.config)
    short = dataclasses.replace(config, training=dataclasses.replace(config.training, epochs=args.epochs))
    started = time.perf_counter()
    stream = benchmark_stream(config, 0, args.data_dir, args.smoke)
    print(f"CPU: {cpu_name()}; stream of {len(stream)} tasks built in {time.perf_counter() - started:.1f} s")
    networks = BenchmarkNetwork.of(config, stream[0].input_shape)
    network = networks.new([networks.task_spec(stream[0])])
    weights = sum(layer.weight.numel() for _, layer in network.multitask_layers())
    print(f"network: {config.network.module or config.network.kind}, {weights:,} kernel weights (one head included)")
    del network
    for method in args.methods.split(",") if args.methods else list(config.methods):
        run = run_method(method, short, stream[: args.tasks], seed=0)
        stages = ", ".join(f"{v:.1f}" for v in run.stage_seconds)
        full = sum(run.stage_seconds) / args.tasks * len(stream) * config.training.epochs / args.epochs
        print(
            f"{method:<18} stage seconds [{stages}] at {args.epochs} epoch(s); "
            f"final {[round(v, 1) for v in run.final]}; "
            f"whole stream at {config.training.epochs} epochs ~ {full / 3600:.1f} h"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
