"""Eval mode for the length of a ``with`` block, each module's own mode restored after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Every submodule of ``module`` in eval mode inside the block; after it (also on an error) each
    one's own ``training`` flag as it was, so a submodule kept in eval mode on purpose (a frozen
    normalization layer) stays so, which ``module.train(previous)`` would not do."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
