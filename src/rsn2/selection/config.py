"""How new subnetworks are selected: one settings object, its defaults and its validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rsn2.errors import SpecError
from rsn2.selection.importance import METHODS, Importance

ALLOCATIONS = ("global", "row_balanced", "input_balanced")
TRANSFERS = ("none", "select", "all")
RESCALE_MODES = ("none", "layer", "unit")


@dataclass(frozen=True)
class SelectionConfig:
    """Selection settings, used by :func:`~rsn2.selection.select_subnetworks`,
    :func:`~rsn2.training.fit_stage` and experiment files (``selection: {...}``).

    The defaults are rsn2's, chosen by the screens in ``docs/results/ablations/``; the paper's plain
    procedure is :data:`PAPER_SELECTION` (``rescale=False, reinit=False``).

    Attributes:
        method: ``"gradient"`` (RSN2: ``|gradient|`` of the task's loss on one batch), ``"magnitude"``,
            ``"random"``, or an :class:`~rsn2.selection.importance.Importance` object.
        rescale: ``True``/``"layer"``: kept weights times ``1/sqrt(f)``, ``f`` the layer's kept fraction;
            ``"unit"``: ``1/sqrt(f_r)`` per row; ``False``/``"none"``: unchanged.
        allocation: ``"global"`` (top scores over the whole layer), ``"row_balanced"`` (every output
            unit keeps the same number of inputs) or ``"input_balanced"`` (every input keeps the same
            number of positions of each subnetwork: later tasks are not left the inputs that carry
            no signal).
        reinit: draw the kept weights anew right after selection (not for subnetworks that keep their
            whole layer).
        sample_size: how many training samples :func:`~rsn2.training.fit_stage` scores a new task's
            positions on (its first ones); ``None`` (the default, the paper's): one training batch.
        transfer: what a new subnetwork may read of the frozen ones (forward transfer; earlier
            tasks stay bit-identical in every mode, and only a task's own new positions train):
            ``"none"`` (the paper's rule): free positions only; ``"select"`` (WSN's): the top-scored
            positions among the free AND the frozen ones, ``keep_fraction`` of the layer counting
            both; the free ones chosen become its own, the frozen ones chosen are read; ``"all"``
            (PackNet's): every frozen position of the layer is read, and ``keep_fraction`` of the
            layer is chosen among the free ones.
    """

    method: str | Importance = "gradient"
    rescale: bool | str = True
    allocation: str = "global"
    reinit: bool = True
    sample_size: int | None = None
    transfer: str = "none"

    def __post_init__(self) -> None:
        if isinstance(self.method, str):
            if self.method not in METHODS:
                raise SpecError(f"method must be one of {METHODS} or an Importance, got {self.method!r}")
        elif not (callable(self.method) and isinstance(getattr(self.method, "name", None), str)):
            raise SpecError(f"method must be one of {METHODS} or an Importance, got {self.method!r}")
        rescale_mode_of(self.rescale)
        if self.allocation not in ALLOCATIONS:
            raise SpecError(f"allocation must be one of {ALLOCATIONS}, got {self.allocation!r}")
        if not isinstance(self.reinit, bool):
            raise SpecError(f"reinit must be true or false, got {self.reinit!r}")
        if self.transfer not in TRANSFERS:
            raise SpecError(f"transfer must be one of {TRANSFERS}, got {self.transfer!r}")
        size = self.sample_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise SpecError(f"sample_size must be a positive integer or null, got {size!r}")

    @property
    def rescale_mode(self) -> str:
        """``"none"``, ``"layer"`` or ``"unit"``."""
        return rescale_mode_of(self.rescale)

    @property
    def method_name(self) -> str:
        return self.method if isinstance(self.method, str) else self.method.name

    def to_dict(self) -> dict[str, Any]:
        """``{"method", "rescale", "allocation", "reinit"}`` as given, and ``"sample_size"`` and
        ``"transfer"`` when set (for results and run identities)."""
        out: dict[str, Any] = {
            "method": self.method_name,
            "rescale": self.rescale,
            "allocation": self.allocation,
            "reinit": self.reinit,
        }
        if self.sample_size is not None:
            out["sample_size"] = self.sample_size
        if self.transfer != "none":
            out["transfer"] = self.transfer
        return out


def rescale_mode_of(rescale: bool | str) -> str:
    """``"none"``, ``"layer"`` or ``"unit"`` for a ``rescale`` setting (``True`` is ``"layer"``)."""
    if rescale is True or rescale is False:
        return "layer" if rescale else "none"
    if rescale not in RESCALE_MODES:
        raise SpecError(f"rescale must be true, false or one of {RESCALE_MODES}, got {rescale!r}")
    return str(rescale)


PAPER_SELECTION = SelectionConfig(rescale=False, reinit=False)
"""The paper's procedure: gradient selection, kept weights left as they were initialised."""
