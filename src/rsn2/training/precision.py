"""Numeric precision and memory format of training steps, chosen per device.

``precision="bf16"`` runs the forward pass under :func:`torch.autocast` with bfloat16: matrix
products and convolutions compute in bf16, parameters, gradients, optimizer state and losses stay
fp32. ``"auto"`` picks bf16 where the device has bf16 units (a CPU with AVX-512-BF16 or AMX, a
CUDA device that supports bf16), fp32 elsewhere; on a CUDA device a network without convolutions
stays fp32. ``memory_format="auto"`` trains networks with convolutions in channels_last. Why:
``docs/decisions/training-precision.md``.

Isolation does not depend on either: masking, the gradient hooks and the optimizer act on the fp32
parameters exactly as in fp32 training, so frozen positions stay bit-identical.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor, nn

from rsn2.errors import SpecError
from rsn2.network.spec import NetworkSpec

PRECISIONS = ("auto", "fp32", "bf16")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")

Precision = Literal["fp32", "bf16"]


def cpu_features() -> dict[str, bool]:
    """The CPU's vector features PyTorch reports (False where this build cannot tell)."""
    probes = {
        "avx2": "_is_avx2_supported",
        "avx512": "_is_avx512_supported",
        "avx512_vnni": "_is_vnni_supported",
        "avx512_bf16": "_is_avx512_bf16_supported",
        "amx": "_is_amx_tile_supported",
    }
    out = {}
    for name, probe in probes.items():
        fn = getattr(torch.cpu, probe, None)
        out[name] = bool(fn()) if callable(fn) else False
    return out


def has_bf16_units(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: AVX-512-BF16 or AMX on CPU, bf16 support on CUDA."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    features = cpu_features()
    return features["avx512_bf16"] or features["amx"]


def has_convolutions(network: nn.Module | NetworkSpec) -> bool:
    """Whether ``network`` (a module, or the spec of one) has a 2-D convolution."""
    if isinstance(network, NetworkSpec):
        return network.has_convolutions
    return any(p.dim() == 4 for p in network.parameters())


def resolve_precision(
    precision: str, device: torch.device, network: nn.Module | NetworkSpec | None = None
) -> Precision:
    """``"fp32"`` or ``"bf16"``: ``precision`` itself, or for ``"auto"`` bf16 where ``device`` has bf16
    units, except on a CUDA device for a ``network`` without convolutions (fp32, see the module
    docstring). Without ``network``, the device's answer for a network with convolutions.

    Raises:
        SpecError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise SpecError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda" and network is not None and not has_convolutions(network):
            return "fp32"
        return "bf16" if has_bf16_units(device) else "fp32"
    return "bf16" if precision == "bf16" else "fp32"


def resolve_channels_last(memory_format: str, network: nn.Module) -> bool:
    """Whether to train ``network`` in channels_last: as asked, or for ``"auto"`` when it has a 4-d kernel.

    Raises:
        SpecError: ``memory_format`` is not one of :data:`MEMORY_FORMATS`.
    """
    if memory_format not in MEMORY_FORMATS:
        raise SpecError(f"memory_format must be one of {MEMORY_FORMATS}, got {memory_format!r}")
    if memory_format == "auto":
        return has_convolutions(network)
    return memory_format == "channels_last"


def autocast(precision: Precision, device: torch.device) -> contextlib.AbstractContextManager[None]:
    """The forward pass's context: bf16 autocast on ``device`` for ``"bf16"``, nothing for ``"fp32"``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def channels_last(network: nn.Module, enabled: bool) -> Iterator[None]:
    """Hold ``network``'s 4-d parameters and buffers in channels_last inside the block, contiguous after.

    The conversion copies values exactly and keeps every :class:`~torch.nn.Parameter` object, so an
    optimizer made inside the block holds the same parameters the network does afterwards.
    """
    if not enabled:
        yield
        return
    network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # missing from the stubs
    try:
        yield
    finally:
        network.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]


def match_state_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter state tensor of ``optimizer`` (Adam's moments, momentum) its parameter's
    memory layout, values unchanged.

    State loaded from a checkpoint keeps the layout it was saved in (contiguous), while the parameters
    may since have moved to channels_last. Fused optimizers step over raw memory, so a moment whose
    strides differ from its parameter's would be applied to another position: another task's frozen
    weight included. Call it after any change of the parameters' memory format.
    """
    for param, state in optimizer.state.items():
        if not isinstance(param, Tensor):
            continue
        for key, value in list(state.items()):
            if isinstance(value, Tensor) and value.shape == param.shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
