"""Networks for your own tasks: a named or listed trunk, and per task the adapter and head its data needs."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from rsn2.errors import ConfigError, SpecError
from rsn2.network.build import build_layer, push_sample
from rsn2.network.factory import module_from_factory, output_width
from rsn2.network.registry import NetworkChoice
from rsn2.network.spec import LayerSpec, TaskSpec, embedding, flatten, linear, relu
from rsn2.workflow.inputs import ImageInput, TabularInput, TaskInput, TextInput

EMBEDDING_DIM = 16
"""Width of the word vectors of text tasks' embedding adapters."""


def module_of(network: NetworkChoice, folder: str | os.PathLike[str]) -> tuple[nn.Module, tuple[int, ...], int]:
    """A ``{module: package.module:callable, input_shape: [...]}`` network: the user's fresh module
    (imported from the training file's ``folder`` first), the input shape it takes and the width of
    its (flat) output."""
    assert network.module is not None and network.input_shape is not None
    try:
        module = module_from_factory(network.module, [folder])
    except SpecError as exc:
        raise ConfigError(f"network.module: {exc}") from None
    try:
        return module, network.input_shape, output_width(module, network.input_shape)
    except SpecError as exc:
        raise ConfigError(f"network: {exc}") from None


def trunk_features(trunk: tuple[LayerSpec, ...], input_shape: tuple[int, ...]) -> int:
    """Width of the trunk's output for one sample; the trunk must end flat (``(N, F)``)."""
    try:
        x = push_sample(((str(i), build_layer(spec)) for i, spec in enumerate(trunk)), torch.zeros((1, *input_shape)))
    except SpecError as exc:
        raise ConfigError(f"network: {exc}") from None
    if x.dim() != 2:
        raise ConfigError(
            f"network: the trunk must end with flat features (add flatten), it ends with {tuple(x.shape[1:])}"
        )
    return int(x.shape[1])


def image_input_for(trunk_shape: tuple[int, ...], options: dict[str, Any]) -> ImageInput:
    """How an image task reads its images: at the trunk's channels and size when the trunk takes
    images, else at ``options`` (``channels``, default 1; ``size`` [width, height], default 28 x 28)."""
    if len(trunk_shape) == 3:
        return ImageInput(trunk_shape[0], trunk_shape[1], trunk_shape[2])
    channels = int(options.get("channels", 1))
    width, height = (int(v) for v in options.get("size", (28, 28)))
    if channels not in (1, 3) or width < 1 or height < 1:
        raise ConfigError(f"images: channels must be 1 or 3 and size positive, got {channels}, {[width, height]}")
    return ImageInput(channels, height, width)


def task_spec(
    name: str,
    kind: str,
    inp: TaskInput,
    outputs: int,
    classes: list[str] | None,
    trunk_shape: tuple[int, ...],
    trunk_out: int,
    keep: float,
    adapter_given: tuple[LayerSpec, ...] | None = None,
    head_given: tuple[LayerSpec, ...] | None = None,
) -> TaskSpec:
    """The task's spec: an adapter from its input to the trunk's (none when they match) and a linear head,
    or the adapter and head the training file gives."""
    head = list(head_given) if head_given is not None else [linear(trunk_out, outputs)]
    if adapter_given is not None:
        return _spec(name, kind, inp, head, list(adapter_given), keep, classes)
    adapter: list[LayerSpec] = []
    if isinstance(inp, ImageInput) and len(trunk_shape) == 3:
        if inp.input_shape != trunk_shape:
            raise ConfigError(f"task {name!r}: images of shape {inp.input_shape} for a trunk taking {trunk_shape}")
    elif len(trunk_shape) != 1:
        raise ConfigError(
            f"task {name!r}: {inp.kind} data needs a network whose input is a vector (fc-a, or layers with a flat "
            f"input_shape); this one takes {list(trunk_shape)}"
        )
    else:
        width = trunk_shape[0]
        if isinstance(inp, TabularInput):
            n = inp.input_shape[0]
            adapter = [] if n == width else [linear(n, width), relu()]
        elif isinstance(inp, ImageInput):
            n = inp.channels * inp.height * inp.width
            adapter = [flatten()] + ([] if n == width else [linear(n, width), relu()])
        else:
            assert isinstance(inp, TextInput)
            adapter = [
                embedding(inp.num_embeddings, EMBEDDING_DIM),
                flatten(),
                linear(inp.length * EMBEDDING_DIM, width),
                relu(),
            ]
    return _spec(name, kind, inp, head, adapter, keep, classes)


def _spec(
    name: str,
    kind: str,
    inp: TaskInput,
    head: list[LayerSpec],
    adapter: list[LayerSpec],
    keep: float,
    classes: list[str] | None,
) -> TaskSpec:
    try:
        return TaskSpec(name, kind, inp.input_shape, head=head, adapter=adapter, keep_fraction=keep, classes=classes)
    except SpecError as exc:
        raise ConfigError(str(exc)) from None
