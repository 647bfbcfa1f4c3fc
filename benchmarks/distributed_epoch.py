"""Time per training epoch: one process against N data-parallel processes (torchrun, gloo), on the CPU.

``python -m benchmarks.distributed_epoch [--processes N] [--rounds R] [--out FILE]`` trains the same
FC-A stage (2 tasks, 10% kept, 10,000 random 784-d samples each, batch 512, 2 epochs, fp32) once in
one process with N threads and once under ``torchrun --nproc_per_node N`` with one thread per
process, alternating R rounds. It prints the seconds per epoch of each and their ratio per round.
Each run is a fresh process; the ratio, not the absolute time, is what to read on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.tables import markdown_table, write_table
from rsn2.devices import cpu_name

SAMPLES, EPOCHS = 10_000, 2


def _worker() -> None:
    """One run (a single process, or one rank under torchrun): print rank 0's seconds per epoch."""
    from benchmarks.models import fc_a
    from rsn2.training import TaskData, TrainConfig, distributed, train_stage

    distributed.init_from_env(torch.device("cpu"))
    net = fc_a(2, 0.1).train()
    gen = torch.Generator().manual_seed(0)
    data = {
        t: TaskData(torch.rand(SAMPLES, 784, generator=gen), torch.randint(0, 10, (SAMPLES,), generator=gen))
        for t in net.task_names
    }
    config = TrainConfig(max_epochs=EPOCHS, patience=EPOCHS + 1, progress=False, precision="fp32")
    result = train_stage(net, data, config)
    if distributed.is_writer():
        print(json.dumps({"seconds_per_epoch": result.seconds / EPOCHS}))
    distributed.shutdown()


def _run(processes: int, threads: int) -> float:
    """Seconds per epoch of one run: one process with ``threads`` threads, or ``processes`` ranks."""
    module = [sys.executable, "-m", "benchmarks.distributed_epoch", "--worker"]
    env = {**os.environ}
    if processes == 1:
        cmd, env["OMP_NUM_THREADS"] = module, str(threads)
    else:
        torchrun = Path(sys.executable).parent / "torchrun"
        cmd = [str(torchrun), "--standalone", "--nproc_per_node", str(processes), "-m", *module[2:]]
        env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds_per_epoch"])


def measure(processes: int, rounds: int) -> list[dict[str, Any]]:
    """Per round: seconds per epoch of one process (``processes`` threads) and of ``processes`` ranks."""
    rows = []
    for r in range(rounds):
        order = (1, processes) if r % 2 == 0 else (processes, 1)
        seconds = {p: _run(p, processes) for p in order}
        rows.append(
            {
                "round": r + 1,
                "one_process_s": seconds[1],
                "data_parallel_s": seconds[processes],
                "speedup": seconds[1] / seconds[processes],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed_epoch", description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=2, help="data-parallel processes (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--out", type=Path, help="also write the table here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.worker:
        _worker()
        return 0
    rows = measure(args.processes, args.rounds)
    median = statistics.median(r["speedup"] for r in rows)
    cpu = cpu_name()
    text = (
        f"{cpu}, {os.cpu_count()} cores: FC-A stage of 2 tasks, {SAMPLES} samples each, batch 512, fp32. "
        f"One process with {args.processes} threads vs {args.processes} processes (gloo) with 1 thread each.\n\n"
        + markdown_table(rows, ["round", "one_process_s", "data_parallel_s", "speedup"])
        + f"\n\nMedian speedup of data-parallel over one process: {median:.2f}x\n"
    )
    print(text, end="")
    write_table(args.out, "benchmarks.distributed_epoch", argv, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
