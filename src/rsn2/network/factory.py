"""``--factory package.module:callable``: the user's code that builds a converted model's module.

A model file never names code to import; the commands that must rebuild a module made multitask by
:func:`rsn2.multitask` (predict, export, serve, add-task) take the user's own factory on the command
line, and a training file may name one as its network.
"""

from __future__ import annotations

import copy
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from rsn2.errors import ConfigError, SpecError


def module_from_factory(factory: str, folders: Sequence[str | os.PathLike[str]] = ()) -> nn.Module:
    """Import ``package.module`` (``folders``, then the current folder, first on the path, as
    ``python -m`` does) and call its ``callable`` with no arguments; it must return a fresh,
    unconverted ``nn.Module``.

    Raises:
        SpecError: the text is not ``module:callable``, the module or attribute is missing, the
            attribute is not callable, or it returns something other than an ``nn.Module``.
    """
    module_name, sep, attr = factory.partition(":")
    if not sep or not module_name or not attr:
        raise SpecError(f"--factory must be package.module:callable, got {factory!r}")
    for folder in [os.getcwd(), *(os.fspath(f) for f in reversed(folders))]:
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"--factory {factory!r}: cannot import {module_name!r}: {exc}") from None
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise SpecError(f"--factory {factory!r}: {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise SpecError(f"--factory {factory!r}: {attr!r} is not callable")
    built = target()
    if not isinstance(built, nn.Module):
        raise SpecError(f"--factory {factory!r} returned {type(built).__name__}, not a torch.nn.Module")
    return built


def module_named_by_file(factory: str, source: str | os.PathLike[str] | None) -> nn.Module:
    """A fresh module from a YAML file's ``network: {module: factory}``, imported from the folder of
    the file ``source`` first (then the current folder).

    Raises:
        ConfigError: as :func:`module_from_factory`, the message starting ``network.module:``.
    """
    folders = [Path(source).resolve().parent] if source else []
    try:
        return module_from_factory(factory, folders)
    except SpecError as exc:
        raise ConfigError(f"network.module: {exc}") from None


def output_width(module: nn.Module, input_shape: Sequence[int], token_input: bool = False) -> int:
    """The features ``module`` outputs per sample for inputs of ``input_shape`` (one sample; token ids
    when ``token_input``), found by running a copy of it in eval mode on zeros.

    Raises:
        SpecError: the module does not take such inputs, or does not output flat ``(N, F)`` features.
    """
    probe = copy.deepcopy(module).eval()
    x = torch.zeros((2, *input_shape), dtype=torch.long if token_input else torch.float32)
    try:
        with torch.no_grad():
            out = probe(x)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise SpecError(f"the module does not take inputs of shape {list(input_shape)}: {exc}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        got = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SpecError(f"the module must output flat features (N, F), it outputs {got}")
    return int(out.shape[1])
