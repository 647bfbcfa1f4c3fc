"""Data-parallel training on ``torch.distributed``: torchrun, DistributedDataParallel, one writer.

Under ``torchrun --nproc_per_node N`` every rank builds the same network from the same seed, selects
the same subnetworks (checked: :func:`check_identical`), and trains on its slice of every global
batch. :class:`StageForward` computes a step's tasks in one call so that
:class:`~torch.nn.parallel.DistributedDataParallel` all-reduces the gradients of the stage's
parameters (the others are left out of DDP). The gradient hooks of
:class:`~rsn2.training.isolation.IsolationGuard` act on each rank's gradients before DDP reduces
them, so a frozen entry's gradient is zero on every rank and stays zero. Early stopping follows
rank 0's validation loss, so every rank decides the same. Only rank 0 writes files
(:func:`is_writer`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from rsn2.devices import module_device
from rsn2.errors import DistributedError


@dataclass(frozen=True)
class Ranks:
    """This process's place in the process group."""

    rank: int
    world_size: int


def active() -> Ranks | None:
    """The process group's ranks when one is initialised with more than one process, else None."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    world = dist.get_world_size()
    return Ranks(dist.get_rank(), world) if world > 1 else None


def is_writer() -> bool:
    """True on the process that writes files: rank 0, or the only process."""
    ranks = active()
    return ranks is None or ranks.rank == 0


def init_from_env(device: torch.device) -> Ranks | None:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1 in the environment), NCCL on
    CUDA and gloo on CPU, ``MASTER_ADDR``/``MASTER_PORT`` from the environment. On CUDA each rank
    takes the GPU ``LOCAL_RANK``. Returns None, and does nothing, outside torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    if not dist.is_available():
        raise DistributedError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return active()


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if active() is not None:
        dist.barrier()


def shard(indices: Tensor, ranks: Ranks) -> tuple[Tensor, float]:
    """This rank's contiguous part of a global batch of ``indices``, and the weight of its mean loss.

    The weight ``len(part) * world_size / len(indices)`` makes the mean over ranks of the weighted
    losses (what DDP's averaged gradients follow) the mean loss of the whole global batch, also when
    the batch does not split evenly.
    """
    part = torch.tensor_split(indices, ranks.world_size)[ranks.rank]
    return part, len(part) * ranks.world_size / max(len(indices), 1)


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` (any picklable object made by this process) on every rank."""
    if active() is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def average_statistics(buffers: Iterable[Tensor]) -> None:
    """Make every rank hold the mean over ranks of each floating-point buffer (batch norms' running
    statistics, which each rank updates on its own shard); the result is the same bytes on every rank.
    No-op without a group."""
    ranks = active()
    if ranks is None:
        return
    for b in buffers:
        if b.dtype.is_floating_point:
            dist.all_reduce(b, op=dist.ReduceOp.SUM)
            b.div_(ranks.world_size)


def state_digest(module: nn.Module) -> str:
    """A SHA-256 over every parameter and buffer of ``module`` (names, shapes, dtypes and bytes)."""
    digest = hashlib.sha256()
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        data = t.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(data.shape)}:{data.dtype}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def check_identical(module: nn.Module, what: str) -> None:
    """Raise :class:`DistributedError` unless every rank holds bit-identical parameters and buffers.

    ``what`` names the moment (``"after selecting ['a']"``) in the message. No-op without a group.
    """
    ranks = active()
    if ranks is None:
        return
    digests: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(digests, state_digest(module))
    differ = [r for r, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise DistributedError(
            f"{what}: rank(s) {differ} hold other weights or owner maps than rank 0; every rank must build the "
            "network from the same seed and select on the same samples"
        )


class StageForward(nn.Module):
    """The network's outputs for one batch per task in one call: ``{task: x} -> {task: output}``
    (what DDP wraps, since it expects one forward per backward)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {t: self.network(x, t) for t, x in inputs.items()}


def data_parallel(network: nn.Module, trainable: Iterable[nn.Parameter]) -> nn.Module:
    """``network`` in a :class:`StageForward` wrapped by DDP over the ``trainable`` parameters only.

    Everything else (frozen kernels not on the stage's path, other tasks' heads, owner maps) is left
    out of DDP's buckets and of its broadcasts.
    """
    from torch.nn.parallel import DistributedDataParallel

    wrapper = StageForward(network)
    keep = {id(p) for p in trainable}
    ignored = [f"network.{n}" for n, p in network.named_parameters() if id(p) not in keep]
    ignored += [f"network.{n}" for n, _ in network.named_buffers()]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(wrapper, ignored)
    device = module_device(network)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(wrapper, device_ids=ids)  # every buffer is ignored: none is synced
