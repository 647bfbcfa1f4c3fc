"""Training step speed by precision and memory format, and torch.compile, measured side by side.

``python -m benchmarks.training_precision [--quick] [--compile] [--out FILE]`` prints, for a
multitask training step at batch 512 of FC-A (2 tasks, 10% kept), CONV-A (5 tasks, 20%) and CONV-B
(4 tasks, 25%), the speedup of every candidate over today's fp32 contiguous step, the candidate
``TrainConfig(precision="auto", memory_format="auto")`` picks on this machine, and the CPU features
the choice rests on. ``python -m benchmarks`` runs it too (section ``precision``).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.models import conv_a, conv_b, fc_a
from benchmarks.tables import markdown_table, write_table
from benchmarks.timing import side_by_side
from rsn2.network import MultitaskNetwork
from rsn2.training import IsolationGuard, TrainConfig, stage_parameters, train_step, trainable_masks
from rsn2.training.precision import cpu_features, resolve_channels_last, resolve_precision

BATCH = 512
ARCHITECTURES: dict[str, tuple[Callable[[], MultitaskNetwork], tuple[int, ...]]] = {
    "fc-a": (lambda: fc_a(2, 0.1), (784,)),
    "conv-a": (lambda: conv_a(5, 0.2), (1, 28, 28)),
    "conv-b": (lambda: conv_b(4, 0.25), (3, 32, 32)),
}


class _Stage:
    """A first stage of every task of ``net`` ready to step: its optimizer and isolation guard entered."""

    def __init__(self, net: MultitaskNetwork, batches: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.net, self.batches = net.train(), batches
        masks = trainable_masks(net, net.subnetworks_of(net.task_names), net.task_names)
        self.optimizer = TrainConfig().make_optimizer(stage_parameters(masks))
        self.guard = IsolationGuard(masks, self.optimizer).__enter__()

    def step(self, precision: str) -> None:
        train_step(self.net, self.batches, self.optimizer, precision)  # type: ignore[arg-type]


def _batches(net: MultitaskNetwork, shape: tuple[int, ...]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return {
        t: (torch.rand(BATCH, *shape, generator=gen), torch.randint(0, 10, (BATCH,), generator=gen))
        for t in net.task_names
    }


def precision_steps(rounds: int, min_time: float, architectures: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per architecture: ms per step of fp32 contiguous (today's path) and the speedup of each candidate."""
    rows = []
    cpu = torch.device("cpu")
    for arch in architectures:
        build, shape = ARCHITECTURES[arch]
        net = build()
        batches = _batches(net, shape)
        plain = _Stage(net, batches)
        candidates = {"fp32": lambda s=plain: s.step("fp32"), "bf16": lambda s=plain: s.step("bf16")}
        is_conv = resolve_channels_last("auto", net)
        if is_conv:
            cl_net = copy.deepcopy(net).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            cl = _Stage(cl_net, batches)
            candidates["fp32-channels-last"] = lambda s=cl: s.step("fp32")
            candidates["bf16-channels-last"] = lambda s=cl: s.step("bf16")
        timing = side_by_side(candidates, baseline="fp32", rounds=rounds, min_time=min_time)
        auto = resolve_precision("auto", cpu) + ("-channels-last" if is_conv else "")
        row: dict[str, Any] = {
            "architecture": arch,
            "tasks": len(net.task_names),
            "batch": BATCH,
            "fp32_ms": timing.seconds["fp32"] * 1e3,
        }
        row.update({f"{name}_speedup": timing.speedup[name] for name in candidates if name != "fp32"})
        row["auto_picks"] = auto
        row["auto_speedup"] = timing.speedup[auto]
        rows.append(row)
    return rows


def compile_probe(steps: int = 3) -> dict[str, Any]:
    """torch.compile on CONV-A's multitask forward (5 tasks, fp32): first-step seconds and the steady
    step's speedup over eager, each side timed over ``steps`` steps after its warm-up."""
    build, shape = ARCHITECTURES["conv-a"]
    net = build()
    batches = _batches(net, shape)
    eager = _Stage(net, batches)
    compiled_net = copy.deepcopy(net)
    compiled = _Stage(compiled_net, batches)
    forward = torch.compile(compiled_net)
    optimizer = compiled.optimizer

    def compiled_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        total = sum(
            torch.nn.functional.cross_entropy(forward(x, t).float(), y)  # type: ignore[operator]
            for t, (x, y) in batches.items()
        )
        total.backward()  # type: ignore[union-attr]
        optimizer.step()

    def timed(fn: Callable[[], None], n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n

    first = timed(compiled_step, 1)
    eager.step("fp32")
    eager_s, compiled_s = timed(lambda: eager.step("fp32"), steps), timed(compiled_step, steps)
    return {
        "architecture": "conv-a",
        "first_step_s": first,
        "eager_ms": eager_s * 1e3,
        "compiled_ms": compiled_s * 1e3,
        "speedup": eager_s / compiled_s,
    }


def cpu_feature_line() -> str:
    """One line naming the CPU's vector features and what ``precision="auto"`` picks here."""
    features = cpu_features()
    have = ", ".join(name for name, present in features.items() if present) or "none reported"
    return f'CPU features: {have}; `precision="auto"` picks {resolve_precision("auto", torch.device("cpu"))}.'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.training_precision", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="FC-A and CONV-A only, fewer rounds")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (about a minute)")
    parser.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)
    archs = ("fc-a", "conv-a") if args.quick else tuple(ARCHITECTURES)
    rows = precision_steps(3 if args.quick else 5, 0.3, archs)
    lines = [cpu_feature_line(), "", precision_table(rows)]
    if args.compile:
        lines += ["", compile_table(compile_probe())]
    text = "\n".join(lines)
    print(text)
    write_table(args.out, "benchmarks.training_precision", sys.argv[1:] if argv is None else argv, text)
    return 0


def precision_table(rows: list[dict[str, Any]]) -> str:
    keys = [
        "architecture",
        "tasks",
        "fp32_ms",
        "bf16_speedup",
        "fp32-channels-last_speedup",
        "bf16-channels-last_speedup",
        "auto_picks",
        "auto_speedup",
    ]
    return markdown_table(rows, keys)


def compile_table(row: dict[str, Any]) -> str:
    return markdown_table([row], ["architecture", "first_step_s", "eager_ms", "compiled_ms", "speedup"])


if __name__ == "__main__":
    raise SystemExit(main())
