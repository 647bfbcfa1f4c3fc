"""The op table of a fused run: one int64 row per layer, its columns named here for both sides.

:class:`~rsn2.inference.FusedRun` writes the rows with :func:`op_row`; the compiled
:func:`~rsn2.inference.kernels.run_fused` and :func:`~rsn2.inference.kernels.feature_major_run` read
them through the column constants below (module-level ints, compile-time constants to Numba). Column
0 is the op's kind, column 1 its layer (an index into the run's per-layer arrays; 0 for ops without
one), and the rest are the kind's :data:`FIELDS`, in order.
"""

from __future__ import annotations

import numpy as np

CONV, POOL, LINEAR, RELU = 0, 1, 2, 3
"""Op kinds: stride-1 convolution (+ bias, ReLU), max pooling, packed linear layer (+ bias, ReLU), ReLU."""

FIELDS: dict[int, tuple[str, ...]] = {
    CONV: (
        "channels",
        "height",
        "width",
        "pad_top",
        "pad_left",
        "padded_height",
        "padded_width",
        "filters",
        "out_height",
        "out_width",
        "span",  # the wide output's length per filter: (out_height - 1) * padded_width + out_width
        "relu",
    ),
    POOL: ("channels", "height", "width", "kernel", "stride", "out_height", "out_width"),
    LINEAR: ("inputs", "outputs", "relu", "feature_major_from"),  # feature-major from this many samples
    RELU: ("elements",),
}
"""Each kind's columns after kind and layer."""

KIND, LAYER = 0, 1
OP_FIELDS = 2 + max(len(f) for f in FIELDS.values())
"""Columns of the table."""


def column(kind: int, name: str) -> int:
    """The column of field ``name`` in an op of ``kind``."""
    return 2 + FIELDS[kind].index(name)


CONV_CHANNELS, CONV_HEIGHT, CONV_WIDTH = (column(CONV, n) for n in ("channels", "height", "width"))
CONV_PAD_TOP, CONV_PAD_LEFT = column(CONV, "pad_top"), column(CONV, "pad_left")
CONV_PADDED_HEIGHT, CONV_PADDED_WIDTH = column(CONV, "padded_height"), column(CONV, "padded_width")
CONV_FILTERS, CONV_OUT_HEIGHT, CONV_OUT_WIDTH = (column(CONV, n) for n in ("filters", "out_height", "out_width"))
CONV_SPAN, CONV_RELU = column(CONV, "span"), column(CONV, "relu")
POOL_CHANNELS, POOL_HEIGHT, POOL_WIDTH = (column(POOL, n) for n in ("channels", "height", "width"))
POOL_KERNEL, POOL_STRIDE = column(POOL, "kernel"), column(POOL, "stride")
POOL_OUT_HEIGHT, POOL_OUT_WIDTH = column(POOL, "out_height"), column(POOL, "out_width")
LINEAR_INPUTS, LINEAR_OUTPUTS = column(LINEAR, "inputs"), column(LINEAR, "outputs")
LINEAR_RELU, LINEAR_FEATURE_MAJOR_FROM = column(LINEAR, "relu"), column(LINEAR, "feature_major_from")
RELU_ELEMENTS = column(RELU, "elements")


def op_row(kind: int, layer: int = 0, **fields: int) -> np.ndarray:
    """One row of the table: ``kind``, ``layer`` and every field of ``kind`` by name (all of them, no other).

    Raises:
        ValueError: a field of ``kind`` missing, or one it does not have.
    """
    names = FIELDS[kind]
    if set(fields) != set(names):
        raise ValueError(f"op kind {kind} takes fields {list(names)}, got {sorted(fields)}")
    row = np.zeros(OP_FIELDS, dtype=np.int64)
    row[KIND], row[LAYER] = kind, layer
    for name, value in fields.items():
        row[column(kind, name)] = int(value)
    return row
