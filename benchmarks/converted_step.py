"""A converted user model's training step against the same model trained dense, side by side.

    python -m benchmarks.converted_step [--rounds 7] [--batch 64] [--nf 20]

The model is ``examples/own-model/resnet.py``'s reduced ResNet-18 (batch norm, residual blocks).
Candidates, fp32 and channels_last as ``TrainConfig(precision="fp32")`` trains convolutional networks,
one Adam step each on one batch of 32x32 images:

- ``dense``: the plain ``nn.Module`` with a linear head (the baseline);
- ``first stage``: converted by ``rsn2.multitask``, its one task selected at 30% and trained by
  ``rsn2.training.train_step`` inside the stage's ``IsolationGuard`` (what ``train_stage`` runs);
- ``later stage``: the same with a first task trained and frozen, the new task at 30%.

Prints each step's median time and its ratio to the dense step, and the CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import rsn2
from benchmarks.timing import side_by_side
from rsn2.devices import cpu_name
from rsn2.network import TaskSpec, linear
from rsn2.selection import select_subnetworks
from rsn2.training import IsolationGuard, TrainConfig, stage_parameters, train_step, trainable_masks

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own-model" / "resnet.py"


def _resnet_module() -> Any:
    spec = importlib.util.spec_from_file_location("own_model_resnet", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _task(name: str, nf: int) -> TaskSpec:
    return TaskSpec(name, "classification", (3, 32, 32), head=[linear(8 * nf, 10)], keep_fraction=0.3)


def steps(batch: int, nf: int) -> dict[str, Callable[[], object]]:
    """One training step per candidate, each ready to call repeatedly."""
    resnet = _resnet_module()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=gen).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), generator=gen)
    config = TrainConfig(precision="fp32")

    torch.manual_seed(0)
    dense = nn.Sequential(resnet.ReducedResNet18(nf), nn.Linear(8 * nf, 10))
    dense.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # missing from the stubs
    dense.train()
    dense_opt = config.make_optimizer(list(dense.parameters()))

    def dense_step() -> None:
        dense_opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(dense(x), y).backward()
        dense_opt.step()

    out: dict[str, Callable[[], object]] = {"dense": dense_step}
    for label, earlier in (("first stage", False), ("later stage", True)):
        torch.manual_seed(0)
        tasks = [_task("old", nf)] if earlier else [_task("new", nf)]
        net = rsn2.multitask(resnet.ReducedResNet18(nf), tasks)
        if earlier:
            select_subnetworks(net, ["old"], {"old": (x, y)})
            net.freeze(["old"])
            net.add_tasks([_task("new", nf)])
        select_subnetworks(net, ["new"], {"new": (x, y)})
        masks = trainable_masks(net, ["new"], ["new"])
        params = stage_parameters(masks)
        optimizer = config.make_optimizer(params)
        guard = IsolationGuard(masks, optimizer)
        net.train()

        def step(net: rsn2.MultitaskNetwork = net, optimizer: Any = optimizer, guard: IsolationGuard = guard) -> None:
            with guard:
                train_step(net, {"new": (x, y)}, optimizer)

        net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # as train_stage holds it
        out[label] = step
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--nf", type=int, default=20)
    args = parser.parse_args(argv)
    timing = side_by_side(steps(args.batch, args.nf), "dense", rounds=args.rounds, min_time=0.5)
    print(
        f"reduced ResNet-18 (nf={args.nf}), batch {args.batch}, fp32 channels_last, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, {cpu_name()}"
    )
    print("| step | median ms | time / dense |")
    print("|---|---|---|")
    for name, seconds in timing.seconds.items():
        print(f"| {name} | {seconds * 1e3:.1f} | {1 / timing.speedup[name]:.2f}x |")


if __name__ == "__main__":
    main()
