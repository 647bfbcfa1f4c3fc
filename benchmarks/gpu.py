"""Training steps and per-task inference on a GPU, side by side: ``python -m benchmarks.gpu``.

``python -m benchmarks.gpu [--device cuda] [--quick] [--json P] [--markdown P]`` measures on one
device, every call ending in a wait for the device (:func:`benchmarks.timing.synced`):

- a multitask training step at batch 512 of FC-A, CONV-A and CONV-B in strict fp32, TF32 and bf16
  autocast, contiguous and channels_last, as speedups over strict fp32, and what
  ``TrainConfig(precision="auto", memory_format="auto")`` picks there; torch.compile's step (not
  with ``--quick``);
- a later stage's training step (earlier tasks frozen) against the dense control's step;
- per-task inference of FC-A (10% kept) and CONV-A (20% kept) as a TaskModel and on the masked
  multitask path, against the dense control.

``--device cpu`` runs the same on the CPU (a smoke check; ``python -m benchmarks`` is the CPU
benchmark). No CUDA device: an error naming the devices allowed, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.inference import model_inference
from benchmarks.tables import markdown_table
from benchmarks.training import training_step
from benchmarks.training_precision import compile_probe, compile_table, precision_steps, precision_table
from rsn2.devices import cpu_name, describe, resolve_device
from rsn2.errors import SpecError
from rsn2.training.precision import has_bf16_units, resolve_precision

INFERENCE_KEYS = ["tasks", "batch", "control_ms", "rsn2_ms", "speedup", "masked_speedup", "max_rel_diff"]


def machine(device: torch.device) -> dict[str, Any]:
    """What the run ran on: the device named, its software, the host CPU."""
    info: dict[str, Any] = {
        "device": describe(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host_cpu": cpu_name(),
        "bf16_units": has_bf16_units(device),
        "auto_precision": {
            "convolutional": resolve_precision("auto", device, torch.nn.Conv2d(1, 1, 1)),
            "fully_connected": resolve_precision("auto", device, torch.nn.Linear(1, 1)),
        },
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "multiprocessors": props.multi_processor_count,
            "memory_gib": round(props.total_memory / 2**30, 1),
        }
    return info


def run(device: torch.device, quick: bool) -> tuple[dict[str, Any], list[str]]:
    """Every measurement on ``device``: the results (JSON-ready) and the report's Markdown lines."""
    rounds, min_time = (3, 0.05) if quick else (7, 0.3)
    archs = ("fc-a", "conv-a") if quick else ("fc-a", "conv-a", "conv-b")
    batches = (1, 64) if quick else (1, 64, 512)
    results: dict[str, Any] = {"machine": machine(device)}
    m = results["machine"]
    software = ", ".join(f"{k} {m[k]}" for k in ("torch", "cuda", "cudnn") if k in m)
    lines = [
        f"Device: {m['device']} ({software}); host CPU {m['host_cpu']}  ",
        f'`precision="auto"` picks {m["auto_precision"]["convolutional"]} for networks with convolutions and '
        f"{m['auto_precision']['fully_connected']} for the others here.\n",
    ]
    results["precision"] = precision_steps(rounds, min_time, archs, device)
    lines += [
        "## Training step by precision and memory format, batch 512, Adam (speedup over strict fp32)\n",
        precision_table(results["precision"]) + "\n",
    ]
    if not quick:
        results["compile"] = compile_probe(steps=20, device=device)
        lines += [
            "## torch.compile, CONV-A multitask step, fp32 (speedup over eager)\n",
            compile_table(results["compile"]) + "\n",
        ]
    results["training_step"] = training_step(rounds, min_time, device=device)
    lines += [
        "## One training step, FC-A, batch 512, fp32, Adam (slowdown = rsn2 time / control time)\n",
        markdown_table([results["training_step"]], ["earlier_tasks", "batch", "control_ms", "rsn2_ms", "slowdown"])
        + "\n",
    ]
    results["fc_a"] = model_inference("fc-a", (1, 10), batches, rounds, min_time, device)
    results["conv_a"] = model_inference("conv-a", (1, 5), batches, rounds, min_time, device)
    for key, title in (("fc_a", "FC-A, 10% kept"), ("conv_a", "CONV-A, 20% kept")):
        lines += [
            f"## Per-task inference, {title}, fp32 (speedup = dense control time / rsn2 time)\n",
            markdown_table(results[key], INFERENCE_KEYS) + "\n",
        ]
    return results, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="device to measure on (default cuda; cpu: a smoke check)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, FC-A and CONV-A only, batches 1 and 64")
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    parser.add_argument("--markdown", type=Path, help="also write the printed report to this Markdown file")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.time()
    results, lines = run(device, args.quick)
    results["wall_s"] = time.time() - start
    command = "python -m benchmarks.gpu " + " ".join(argv if argv is not None else sys.argv[1:])
    results["command"] = command.strip()
    report = "\n".join([f"Command: `{results['command']}`  ", *lines, f"Wall time {results['wall_s']:.0f} s."])
    print(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
