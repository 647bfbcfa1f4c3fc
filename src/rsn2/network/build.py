"""Turn a :class:`~rsn2.network.spec.LayerSpec` into a module."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from rsn2.errors import SpecError
from rsn2.layers import MultitaskConv2d, MultitaskLinear
from rsn2.layers.conversions import converted
from rsn2.network.spec import LayerSpec

EMBEDDING_INIT_RANGE = 0.05
"""Embeddings start uniform in [-0.05, 0.05] (Keras' default, which the paper used), not PyTorch's
N(0, 1): with IMDB's 2-dimensional embedding flattened into a dense layer, N(0, 1) lets the dense
layer memorise token positions before the shared embedding learns anything, and IMDB stays near
chance (see docs/method.md)."""


def build_layer(spec: LayerSpec) -> nn.Module:
    """A fresh module for ``spec``.

    ``linear``/``conv2d`` are built as the plain :class:`torch.nn.Linear`/:class:`torch.nn.Conv2d`
    they describe, on the meta device (no memory, no random draws), and converted by the same table
    as a user's model (:func:`rsn2.layers.conversions.converted`): a multitask layer with a
    Glorot-uniform kernel (the paper's Keras default). ``relu``/``flatten``/``maxpool2d`` are the
    stateless torch modules; ``embedding`` a plain (never pruned) :class:`torch.nn.Embedding`
    initialised uniform in ``[-init_range, init_range]``."""
    p = dict(spec.params)
    if spec.kind == "linear":
        plain: nn.Module = nn.Linear(
            int(p["in_features"]), int(p["out_features"]), bias=bool(p.get("bias", True)), device="meta"
        )
        return converted(plain)
    if spec.kind == "conv2d":
        pad = p.get("padding", 0)
        stride = _pair_or_int(p.get("stride", 1))
        if pad == "same" and stride not in (1, (1, 1)):
            raise SpecError("padding='same' requires stride 1 (as in torch.nn.Conv2d)")
        plain = nn.Conv2d(
            int(p["in_channels"]),
            int(p["out_channels"]),
            _pair_or_int(p["kernel_size"]),
            stride=stride,
            padding=pad if isinstance(pad, str) else _pair_or_int(pad),
            dilation=_pair_or_int(p.get("dilation", 1)),
            bias=bool(p.get("bias", True)),
            device="meta",
        )
        return converted(plain)
    if spec.kind == "relu":
        return nn.ReLU()
    if spec.kind == "flatten":
        return nn.Flatten()
    if spec.kind == "maxpool2d":
        return nn.MaxPool2d(_pair_or_int(p["kernel_size"]), stride=_pair_or_int(p.get("stride", p["kernel_size"])))
    if spec.kind == "embedding":
        init_range = p.get("init_range", EMBEDDING_INIT_RANGE)
        if isinstance(init_range, bool) or not isinstance(init_range, (int, float)) or not 0 < init_range < math.inf:
            raise SpecError(f"embedding init_range must be a positive number, got {init_range!r}")
        layer = nn.Embedding(int(p["num_embeddings"]), int(p["embedding_dim"]))
        nn.init.uniform_(layer.weight, -init_range, init_range)
        return layer
    raise AssertionError(f"unhandled layer kind {spec.kind}")  # LayerSpec validated the kind


def push_sample(steps: Iterable[tuple[str, nn.Module]], x: Tensor) -> Tensor:
    """``x`` (one sample, batch axis first) through ``steps`` ``(name, module)`` in order, multitask
    layers with their whole kernel, without gradient; returns the output. Checks that shapes fit.

    Raises:
        SpecError: a module does not accept its input; names the step, the module and the input shape.
    """
    with torch.no_grad():
        for name, module in steps:
            try:
                if isinstance(module, (MultitaskLinear, MultitaskConv2d)):
                    x = module._apply_kernel(x, module.weight, None)
                else:
                    x = module(x)
            except (RuntimeError, IndexError) as exc:
                raise SpecError(
                    f"input of shape {tuple(x.shape[1:])} does not fit layer {name} ({module}): "
                    f"{str(exc).splitlines()[0]}"
                ) from None
    return x


def _pair_or_int(v: object) -> int | tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[1]))
    return int(v)  # type: ignore[call-overload]
