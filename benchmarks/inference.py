"""Per-task inference of multitask models against their dense controls, and a per-layer sweep."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

import torch

from benchmarks.models import SERVED, plain_control
from benchmarks.timing import side_by_side, synced
from rsn2.inference import SparsePolicy, SubnetworkKernel, TaskModel, task_models
from rsn2.layers import FREE, MultitaskConv2d, MultitaskKernelLayer, MultitaskLinear


def model_inference(
    arch: str,
    task_counts: tuple[int, ...],
    batches: tuple[int, ...],
    rounds: int,
    min_time: float,
    device: torch.device | None = None,
) -> list[dict[str, Any]]:
    """For each task count and batch: task0's time as a :class:`~rsn2.inference.TaskModel` (sparse where
    the default policy says; dense masked kernels off the CPU), as ``rsn2 serve`` holds it (within the
    default dense budget shared by all tasks: ``served``), with its linear shares' steps held
    compact (``compact``: ``SparsePolicy.compact_steps``, what ``rsn2 serve --compact-steps``
    runs), with its values held as bfloat16 (``bf16``: ``rsn2 serve --values bfloat16``), with the
    same kernels called layer by layer instead of in fused runs (``layered``: what the calls between
    layers cost) and on the network's masked dense path, against the plain dense control, all on
    ``device`` (default CPU); ratios are control time / path time (> 1 means faster)."""
    device = device or torch.device("cpu")
    served_arch = SERVED[arch]
    keep, shape = served_arch.keep, served_arch.input_shape
    rows = []
    for n_tasks in task_counts:
        net = served_arch.build(n_tasks, keep).to(device)
        control = plain_control(net, "task0").to(device)
        net.eval()
        model = TaskModel.from_network(net, "task0")
        layered = TaskModel.from_network(net, "task0", SparsePolicy(fuse=False))
        served = task_models(net)["task0"]  # as rsn2 serve holds it: within the default dense budget
        compact = TaskModel.from_network(net, "task0", SparsePolicy(compact_steps=True))
        bf16 = TaskModel.from_network(net, "task0", values="bfloat16")
        for batch in batches:
            x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(batch)).to(device)
            with torch.no_grad():
                auto = model(x)
                masked = net(x, "task0")
                t = side_by_side(
                    {
                        "control": synced(partial(control, x), device),
                        "rsn2": synced(partial(model, x), device),
                        "served": synced(partial(served, x), device),
                        "compact": synced(partial(compact, x), device),
                        "bf16": synced(partial(bf16, x), device),
                        "layered": synced(partial(layered, x), device),
                        "masked": synced(partial(net, x, "task0"), device),
                    },
                    baseline="control",
                    rounds=rounds,
                    min_time=min_time,
                )
            rows.append(
                {
                    "arch": arch,
                    "keep": keep,
                    "tasks": n_tasks,
                    "batch": batch,
                    "control_ms": t.seconds["control"] * 1e3,
                    "rsn2_ms": t.seconds["rsn2"] * 1e3,
                    "masked_ms": t.seconds["masked"] * 1e3,
                    "speedup": t.speedup["rsn2"],
                    "served_speedup": t.speedup["served"],
                    "compact_speedup": t.speedup["compact"],
                    "bf16_speedup": t.speedup["bf16"],
                    "layered_speedup": t.speedup["layered"],
                    "masked_speedup": t.speedup["masked"],
                    "max_abs_diff": float((auto - masked).abs().max()),
                    "max_rel_diff": float((auto - masked).abs().max() / masked.abs().max()),
                }
            )
    return rows


def layer_sweep(
    densities: tuple[float, ...], batches: tuple[int, ...], rounds: int, min_time: float
) -> list[dict[str, Any]]:
    """One layer, sparse kernels vs the masked dense kernel, over densities and batch sizes: the
    measurements behind :class:`rsn2.inference.SparsePolicy`'s defaults."""
    rows = []
    layers: dict[str, tuple[MultitaskKernelLayer, tuple[int, ...]]] = {
        "linear 1000x1000": (MultitaskLinear(1000, 1000), (1000,)),
        "conv 32->64 3x3 on 12x12": (MultitaskConv2d(32, 64, 3), (32, 12, 12)),
    }
    sweep = SparsePolicy(min_positions=0, linear_max_density=1.0, conv_max_density=1.0, conv_max_batch=1 << 30)
    for name, (layer, shape) in layers.items():
        layer.add_subnetwork("s")
        for density in densities:
            with torch.no_grad():
                layer.owner.fill_(FREE)
                layer.owner[torch.rand(layer.weight.shape, generator=torch.Generator().manual_seed(0)) < density] = 0
            kernels = {"dense": SubnetworkKernel.from_layer(layer, "s", SparsePolicy(enabled=False))}
            kernels["sparse"] = SubnetworkKernel.from_layer(layer, "s", sweep)
            if isinstance(layer, MultitaskLinear):
                kernels["rows"] = SubnetworkKernel.from_layer(layer, "s", replace(sweep, rows_kernel_max_batch=1 << 30))
                kernels["feature_major"] = SubnetworkKernel.from_layer(
                    layer, "s", replace(sweep, rows_kernel_max_batch=0)
                )
            for batch in batches:
                x = torch.rand(batch, *shape)
                candidates = {k: partial(kernel, x) for k, kernel in kernels.items()}
                with torch.no_grad():
                    t = side_by_side(candidates, baseline="dense", rounds=rounds, min_time=min_time)
                rows.append(
                    {"layer": name, "density": density, "batch": batch}
                    | {f"{k}_speedup": v for k, v in t.speedup.items() if k != "dense"}
                )
    return rows
