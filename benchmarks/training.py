"""One training step and peak training memory, multitask vs the plain dense control."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from typing import Any

import torch
from torch import nn

from benchmarks.models import fc_a, plain_control, plain_fc_a
from benchmarks.timing import side_by_side, synced
from rsn2.network import TaskSpec
from rsn2.network.architectures import dense_head
from rsn2.selection import select_subnetworks
from rsn2.training import IsolationGuard, TrainConfig, stage_parameters, train_step, trainable_masks

BATCH = 512


def _later_stage(n_earlier: int) -> tuple[Any, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """FC-A whose ``n_earlier`` tasks are trained and frozen; task ``new`` (10% kept) is the stage."""
    net = fc_a(n_earlier, 0.1)
    net.freeze(net.subnetworks_of(net.task_names))
    net.add_tasks([TaskSpec("new", "classification", (784,), head=dense_head(1000, 10), keep_fraction=0.1)])
    gen = torch.Generator().manual_seed(1)
    batch = {"new": (torch.rand(BATCH, 784, generator=gen), torch.randint(0, 10, (BATCH,), generator=gen))}
    select_subnetworks(net, ["new"], {"new": (batch["new"][0][:64], batch["new"][1][:64])}, method="gradient")
    return net, batch


def training_step(
    rounds: int, min_time: float, n_earlier: int = 2, device: torch.device | None = None
) -> dict[str, Any]:
    """Adam step at batch 512 of a later stage (guarded) vs the dense control's Adam step, fp32, on
    ``device`` (default CPU); both use the optimizer rsn2's training loop makes
    (:meth:`TrainConfig.make_optimizer`)."""
    device = device or torch.device("cpu")
    net, batch = _later_stage(n_earlier)
    control = plain_control(net, "new").to(device)
    net.to(device).train()
    control.train()
    batch = {t: (x.to(device), y.to(device)) for t, (x, y) in batch.items()}
    masks = trainable_masks(net, net.subnetworks_of(["new"]), ["new"])
    opt = TrainConfig().make_optimizer(stage_parameters(masks))  # what rsn2's training loop uses
    control_opt = TrainConfig().make_optimizer(control.parameters())  # the same for the control
    x, y = batch["new"]
    loss_fn = nn.CrossEntropyLoss()

    def control_step() -> None:
        control_opt.zero_grad(set_to_none=True)
        loss_fn(control(x), y).backward()
        control_opt.step()

    with IsolationGuard(masks, opt):
        t = side_by_side(
            {"control": synced(control_step, device), "rsn2": synced(lambda: train_step(net, batch, opt), device)},
            baseline="control",
            rounds=rounds,
            min_time=min_time,
        )
    return {
        "earlier_tasks": n_earlier,
        "batch": BATCH,
        "control_ms": t.seconds["control"] * 1e3,
        "rsn2_ms": t.seconds["rsn2"] * 1e3,
        "slowdown": 1.0 / t.speedup["rsn2"],
    }


def peak_memory(steps: int = 5) -> dict[str, Any]:
    """Peak resident memory of ``steps`` training steps, each side in a fresh process."""
    out = {}
    for side in ("control", "rsn2"):
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.training", side, str(steps)], capture_output=True, text=True, check=True
        )
        out[side] = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "steps": steps,
        "control_peak_mib": out["control"]["peak_mib"],
        "rsn2_peak_mib": out["rsn2"]["peak_mib"],
        "control_growth_mib": out["control"]["growth_mib"],
        "rsn2_growth_mib": out["rsn2"]["growth_mib"],
        "peak_ratio": out["rsn2"]["peak_mib"] / out["control"]["peak_mib"],
        "growth_ratio": out["rsn2"]["growth_mib"] / out["control"]["growth_mib"],
    }


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def _peak_mib() -> float:
    """This process's peak resident set (VmHWM). Not ``ru_maxrss``: Linux carries that across
    ``exec`` from the parent it was forked from, so a child started by a large parent reads the
    parent's size."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _measure(side: str, steps: int) -> None:
    """Child process: build one side's model, note memory, train ``steps`` steps, print peak and growth.

    The rsn2 side holds the whole multitask model (two trained tasks and the new one); the control
    side holds one dense FC-A. Peak is the process's maximum resident set; growth is peak minus the
    resident set once the model and batch exist (what training itself adds)."""
    gen = torch.Generator().manual_seed(1)
    if side == "control":
        control = plain_fc_a()
        batch = {"new": (torch.rand(BATCH, 784, generator=gen), torch.randint(0, 10, (BATCH,), generator=gen))}
    else:
        net, batch = _later_stage(2)
    gc.collect()
    base = _rss_mib()
    if side == "control":
        control.train()
        opt = TrainConfig().make_optimizer(control.parameters())
        x, y = batch["new"]
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(control(x), y).backward()
            opt.step()
    else:
        net.train()
        masks = trainable_masks(net, net.subnetworks_of(["new"]), ["new"])
        opt = TrainConfig().make_optimizer(stage_parameters(masks))
        with IsolationGuard(masks, opt):
            for _ in range(steps):
                train_step(net, batch, opt)
    peak = _peak_mib()
    print(json.dumps({"peak_mib": peak, "growth_mib": peak - base}))


if __name__ == "__main__":
    _measure(sys.argv[1], int(sys.argv[2]))
