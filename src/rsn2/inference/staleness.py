"""Knowing when a cached inference plan may be stale.

A plan is keyed on its tensors' storage and version counters, which every ordinary in-place change
bumps (``copy_``, ``mul_``, ``load_state_dict``, foreach optimizers). PyTorch's fused optimizers
(``Adam(fused=True)``, which rsn2's training loop uses) and edits through ``.data`` do not bump
them. Every optimizer step therefore also bumps :func:`optimizer_steps`, through PyTorch's global
step hook, and plans include it in their key. Edits through ``.data`` need
``clear_inference_cache()`` on the layer or network.
"""

from __future__ import annotations

from typing import Any

from torch.optim.optimizer import register_optimizer_step_post_hook

_steps = 0


def optimizer_steps() -> int:
    """How many optimizer steps (of any optimizer) this process has taken since rsn2 was imported."""
    return _steps


def _count_step(*_: Any) -> None:
    global _steps
    _steps += 1


_handle = register_optimizer_step_post_hook(_count_step)
