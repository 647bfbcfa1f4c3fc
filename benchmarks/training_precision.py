"""Training step speed by precision and memory format, and torch.compile, measured side by side.

``python -m benchmarks.training_precision [--quick] [--compile] [--out FILE]`` prints, for a
multitask training step at batch 512 of FC-A (2 tasks, 10% kept), CONV-A (5 tasks, 20%) and CONV-B
(4 tasks, 25%), the speedup of every candidate over today's fp32 contiguous step, the candidate
``TrainConfig(precision="auto", memory_format="auto")`` picks on this machine, and the CPU features
the choice rests on. ``python -m benchmarks`` runs it too (section ``precision``), and
``python -m benchmarks.gpu`` runs it on a CUDA device, where TF32 joins the candidates.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks.models import conv_a, conv_b, fc_a
from benchmarks.tables import markdown_table, write_table
from benchmarks.timing import side_by_side, synced
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


def _batches(
    net: MultitaskNetwork, shape: tuple[int, ...], device: torch.device
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    cpu = {
        t: (torch.rand(BATCH, *shape, generator=gen), torch.randint(0, 10, (BATCH,), generator=gen))
        for t in net.task_names
    }
    return {t: (x.to(device), y.to(device)) for t, (x, y) in cpu.items()}


@contextlib.contextmanager
def float32_matmuls(mode: str) -> Iterator[None]:
    """CUDA's fp32 matrix products and convolutions in ``mode`` inside the block: ``"ieee"`` (strict
    fp32), ``"tf32"`` (TensorFloat-32 units) or ``"none"`` (PyTorch's defaults: TF32 convolutions,
    strict matrix products). No effect on a CPU."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv  # type: ignore[attr-defined]
    saved = (matmul.fp32_precision, conv.fp32_precision)
    matmul.fp32_precision = conv.fp32_precision = mode
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved


def _candidate(stage: _Stage, precision: str, float32_mode: str, device: torch.device) -> Callable[[], object]:
    def step() -> None:
        with float32_matmuls(float32_mode):
            stage.step(precision)

    return synced(step, device)


def precision_steps(
    rounds: int, min_time: float, architectures: tuple[str, ...], device: torch.device | None = None
) -> list[dict[str, Any]]:
    """Per architecture: ms per step of fp32 contiguous (today's path) and the speedup of each candidate.

    On CUDA the baseline ``fp32`` is strict IEEE fp32 and ``tf32`` (TensorFloat-32 matrix products and
    convolutions) joins the candidates; ``bf16`` runs under PyTorch's default fp32 settings, as
    training does.
    """
    rows = []
    device = device or torch.device("cpu")
    cuda = device.type == "cuda"
    for arch in architectures:
        build, shape = ARCHITECTURES[arch]
        net = build().to(device)
        batches = _batches(net, shape, device)
        stages = {"": _Stage(net, batches)}
        is_conv = resolve_channels_last("auto", net)
        if is_conv:
            cl_net = copy.deepcopy(net).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            stages["-channels-last"] = _Stage(cl_net, batches)
        modes = {"fp32": ("fp32", "ieee" if cuda else "none"), "bf16": ("bf16", "none")}
        if cuda:
            modes["tf32"] = ("fp32", "tf32")
        candidates = {
            name + suffix: _candidate(stage, precision, mode, device)
            for suffix, stage in stages.items()
            for name, (precision, mode) in modes.items()
        }
        timing = side_by_side(candidates, baseline="fp32", rounds=rounds, min_time=min_time)
        auto = resolve_precision("auto", device, net) + ("-channels-last" if is_conv else "")
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


def compile_probe(steps: int = 3, device: torch.device | None = None) -> dict[str, Any]:
    """torch.compile on CONV-A's multitask forward (5 tasks, fp32) on ``device`` (default CPU): first-step
    seconds and the steady step's speedup over eager, each side timed over ``steps`` steps after its
    warm-up."""
    device = device or torch.device("cpu")
    build, shape = ARCHITECTURES["conv-a"]
    net = build().to(device)
    batches = _batches(net, shape, device)
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

    def timed(fn: Callable[[], object], n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n

    first = timed(synced(compiled_step, device), 1)
    eager_step = synced(lambda: eager.step("fp32"), device)
    eager_step()
    eager_s, compiled_s = timed(eager_step, steps), timed(synced(compiled_step, device), steps)
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
    """The rows of :func:`precision_steps` as a Markdown table: a column per candidate measured."""
    speedups = list(dict.fromkeys(k for row in rows for k in row if k.endswith("_speedup") and k != "auto_speedup"))
    return markdown_table(rows, ["architecture", "tasks", "fp32_ms", *speedups, "auto_picks", "auto_speedup"])


def compile_table(row: dict[str, Any]) -> str:
    return markdown_table([row], ["architecture", "first_step_s", "eager_ms", "compiled_ms", "speedup"])


if __name__ == "__main__":
    raise SystemExit(main())
