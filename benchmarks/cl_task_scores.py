"""Which output score finds a sample's task best: per-sample task identification of rsn2 on a benchmark.

    python -m benchmarks.cl_task_scores benchmarks/cl/split-mnist.yaml --data-dir ../shared/data \
        [--method rsn2] [--seed 0] [--out FILE.json] [--smoke]

Trains ``--method`` on the benchmark's stream with the file's settings (one seed), then scores every
test sample of every task with every task's output and counts how often the task scoring best is the
sample's own, per sample, for each score:

- ``entropy``: normalized output entropy (what ``net.infer_task`` uses), lowest wins;
- ``max-softmax``, ``max-logit``, ``energy`` (``logsumexp`` of the logits): highest wins;
- ``z-entropy``, ``percentile``: the entropy calibrated by each task's own training samples (its
  mean and std, or the fraction of them less certain), which a task's own stage can compute without
  any other task's data.

Prints the table and the CPU, and writes it as JSON to ``--out`` if given.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import torch
from torch import Tensor

from rsn2.continual.config import load_benchmark_config
from rsn2.continual.methods import run_method
from rsn2.continual.runner import benchmark_stream
from rsn2.devices import cpu_name
from rsn2.io import atomic_write_bytes
from rsn2.network.task_inference import normalized_entropy

CALIBRATION_SAMPLES = 2000
"""Training samples per task its calibration statistics are read from."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="benchmark YAML file")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--method", default="rsn2", help="a multi-head method of the file (default rsn2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the results here as JSON")
    parser.add_argument("--smoke", action="store_true", help="256 training / 128 test samples per task")
    args = parser.parse_args(argv)
    config = load_benchmark_config(args.config)
    stream = benchmark_stream(config, args.seed, args.data_dir, args.smoke)
    run = run_method(args.method, config, stream, args.seed)
    net = run.network
    if net is None:
        raise SystemExit(f"{args.method} keeps no multi-head network; choose rsn2, packnet, ewc or finetune")
    net.eval()
    names = [t.name for t in stream]
    with torch.no_grad():
        outputs = [[net(t.x_test, task=n) for n in names] for t in stream]
        own = [net(t.train.x[:CALIBRATION_SAMPLES], task=t.name) for t in stream]
    own_entropy = [normalized_entropy(o) for o in own]
    scores: dict[str, Callable[[int, Tensor], Tensor]] = {  # lower is likelier
        "entropy": lambda k, o: normalized_entropy(o),
        "max-softmax": lambda k, o: -torch.softmax(o, -1).max(-1).values,
        "max-logit": lambda k, o: -o.max(-1).values,
        "energy": lambda k, o: -torch.logsumexp(o, -1),
        "z-entropy": lambda k, o: (normalized_entropy(o) - own_entropy[k].mean()) / (own_entropy[k].std() + 1e-6),
        "percentile": lambda k, o: (normalized_entropy(o)[:, None] > own_entropy[k][None, :]).float().mean(1),
    }
    table = {}
    for name, score in scores.items():
        right = 0.0
        for j, row in enumerate(outputs):
            chosen = torch.stack([score(k, o) for k, o in enumerate(row)]).argmin(0)
            right += 100.0 * float((chosen == j).float().mean()) / len(stream)
        table[name] = round(right, 2)
    result = {
        "benchmark": config.name,
        "method": args.method,
        "seed": args.seed,
        "smoke": args.smoke,
        "task_accuracy": run.final,
        "task_id_per_sample": table,
        "cpu": cpu_name(),
    }
    print(f"{config.name}, {args.method}, seed {args.seed} ({result['cpu']}): per-sample task identification, %")
    for name, value in table.items():
        print(f"  {name:<12} {value:6.2f}")
    if args.out:
        atomic_write_bytes(args.out, json.dumps(result, indent=1).encode())


if __name__ == "__main__":
    main()
