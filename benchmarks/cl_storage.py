"""Model file size and WSN's capacity measure against the number of tasks, for each transfer mode.

    python -m benchmarks.cl_storage [--tasks 10,100] [--hidden 100,100] [--inputs 784]

Builds the Permuted-MNIST network (784-100-100 MLP, a 10-class head per task), adds the tasks one per
stage, each keeping ``1 / tasks`` of every trunk layer, selects each with random scores (file sizes do
not depend on which positions are chosen, only on how many and how they are stored) and freezes it.
Per transfer mode (``none``, ``select``, ``all``) and task count it prints: WSN's capacity
((32 x used weights + owner-map and read-set bits) / (32 x trunk weights)), the model file's bytes
beside one dense model's file, and the positions the first and the last task compute with (their
per-task inference cost). No training: nothing here is timed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from rsn2.continual.storage import storage_report, task_weights
from rsn2.io import save_model
from rsn2.network import MultitaskNetwork, NetworkSpec, TaskSpec, linear
from rsn2.network.architectures import mlp_trunk
from rsn2.network.dense_control import dense_control
from rsn2.selection import SelectionConfig, select_subnetworks


def _network(tasks: int, transfer: str, inputs: int, hidden: list[int]) -> MultitaskNetwork:
    torch.manual_seed(0)
    trunk = mlp_trunk(inputs, hidden)
    net = MultitaskNetwork(NetworkSpec(trunk))
    selection = SelectionConfig(method="random", transfer=transfer)
    for i in range(tasks):
        spec = TaskSpec(f"t{i}", "classification", (inputs,), head=[linear(hidden[-1], 10)], keep_fraction=1 / tasks)
        net.add_tasks([spec], transfer=transfer)
        select_subnetworks(net, [spec.name], selection=selection, seed=i)
        net.freeze(net.subnetworks_of([spec.name]))
    return net


def _dense_bytes(inputs: int, hidden: list[int]) -> int:
    spec = TaskSpec("t", "classification", (inputs,), head=[linear(hidden[-1], 10)])
    control = dense_control(NetworkSpec(mlp_trunk(inputs, hidden), (spec,)), "t")
    with tempfile.TemporaryDirectory() as tmp:
        save_model(control, Path(tmp) / "dense.safetensors")
        return os.path.getsize(Path(tmp) / "dense.safetensors")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="10,100", help="comma-separated task counts (default 10,100)")
    parser.add_argument("--hidden", default="100,100", help="hidden widths (default 100,100)")
    parser.add_argument("--inputs", type=int, default=784)
    args = parser.parse_args(argv)
    hidden = [int(h) for h in args.hidden.split(",")]
    dense = _dense_bytes(args.inputs, hidden)
    print(f"network: {args.inputs}-{'-'.join(map(str, hidden))} MLP; one dense model's file: {dense:,} bytes")
    print("| tasks | transfer | capacity (WSN) | model file | x one dense file | first task's weights | last task's |")
    print("|---|---|---|---|---|---|---|")
    for tasks in (int(t) for t in args.tasks.split(",")):
        for transfer in ("none", "select", "all"):
            net = _network(tasks, transfer, args.inputs, hidden)
            report = storage_report(net)
            first, last = task_weights(net, "t0"), task_weights(net, f"t{tasks - 1}")
            print(
                f"| {tasks} | {transfer} | {report['capacity']:.3f} | {report['model_file_bytes']:,} | "
                f"{report['model_file_bytes'] / dense:.2f} | {first:,} | {last:,} |"
            )


if __name__ == "__main__":
    main()
