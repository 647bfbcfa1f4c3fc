"""Choosing the device a model trains on, and finding the one it lives on."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from rsn2.errors import SpecError

DEVICE_CHOICES = "'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The device ``name`` stands for; ``"auto"`` is the first CUDA device when there is one, else CPU.

    Raises:
        SpecError: ``name`` is not a device PyTorch knows, or names a CUDA device this machine lacks.
    """
    if isinstance(name, torch.device):
        device = name
    elif name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise SpecError(f"unknown device {name!r}; allowed: {DEVICE_CHOICES}") from None
    if device.type not in ("cpu", "cuda"):
        raise SpecError(f"device {name!r} is not supported; allowed: {DEVICE_CHOICES}")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SpecError(f"device {name!r} asked for, but this machine has no CUDA device; use 'cpu' or 'auto'")
        if device.index is not None and device.index >= count:
            raise SpecError(f"device {name!r} asked for, but this machine has {count} CUDA device(s)")
    return device


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (or buffer); CPU when it has neither."""
    first: torch.Tensor | None = next(module.parameters(), None)
    if first is None:
        first = next(module.buffers(), None)
    return first.device if first is not None else torch.device("cpu")


def describe(device: torch.device) -> str:
    """A short description of ``device`` for reports: the GPU's name, or the CPU's cores and threads."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def _cpuinfo(field: str) -> str:
    """The value of ``field`` for the first CPU in ``/proc/cpuinfo``, ``""`` where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` reports: every benchmark names it."""
    import platform

    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_vendor() -> str:
    """The CPU's vendor as ``/proc/cpuinfo`` names it (``GenuineIntel``, ``AuthenticAMD``), else ``""``."""
    return _cpuinfo("vendor_id")


def cpus_in_use(topology: Path = Path("/sys/devices/system/cpu")) -> tuple[int, int]:
    """``(cpus, cores)``: the logical CPUs this process may run on and the physical cores they sit on.

    Two CPUs of one core (hyperthreads) share its load ports and vector units, so a benchmark pinned
    to them measures one core's compute. Cores are read from ``topology`` (Linux sysfs: each CPU's
    ``physical_package_id`` and ``core_id``); a CPU whose topology cannot be read counts as a core.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cores: set[tuple[str, ...]] = set()
    for cpu in cpus:
        folder = topology / f"cpu{cpu}" / "topology"
        try:
            cores.add(((folder / "physical_package_id").read_text().strip(), (folder / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return len(cpus), len(cores)
