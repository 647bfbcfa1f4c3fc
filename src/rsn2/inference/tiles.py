"""Register-tiled sums of shifted rows: the inner loop of the sparse convolution and of the feature-major
linear kernels.

Both kernels compute, for one output row, ``dst[x] = sum_k vals[k] * src[base_k + x]`` for ``x <
width``: a convolution filter over a padded plane (``base_k`` the entry's tap offset), or one row of a
linear layer over activations held ``(features, batch)`` (``base_k = col_k * stride``). Adding each
entry's shifted row into ``dst`` in turn (an axpy per entry) loads and stores ``dst`` once per kept
weight; here ``dst`` is cut into tiles of :data:`WIDE` (or :data:`NARROW`) values summed in as many
scalar accumulators over all entries and stored once, so each entry costs one vector load and one
fused multiply-add per vector of the tile.

LLVM turns the scalar accumulators into vector registers with its SLP vectorizer, which Numba turns
off by default (numba#8852: miscompilations elsewhere). :func:`slp_compiled` turns it on for the
compilation of these functions only; the tests compare every kernel with PyTorch's dense operators
and check that the compiled code holds packed multiply-adds. The tile functions are generated from
one template (:func:`_tile_source`): 64 accumulators written out by hand would be 200 lines of noise
(``python -m rsn2.inference.generated`` prints what they expand to).

The kernels' on-disk cache is keyed on this module's source too (:mod:`rsn2.inference.jit`): an
edit here compiles every kernel that inlines these functions afresh.

The ``layers`` and ``inference`` tables of ``python -m benchmarks`` measure the kernels built on these
against PyTorch's dense operators (``docs/decisions/feature-major-tiles.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import config as numba_config
from numba.core.compiler_lock import global_compiler_lock

from rsn2.inference.jit import njit
from rsn2.inference.values import value_at

WIDE = 64
"""Values per tile on a wide row (four AVX-512 or eight AVX2 registers of accumulators)."""
MID = 32
"""Values per tile for what is left of a row after its wide tiles, when that is more than :data:`NARROW`."""
NARROW = 16
"""Values per tile for the last few values of a row."""
SMALL = 8
"""Values per tile of a feature-major row of up to 8 samples (fewer are padded to it, see
:func:`tile_width`); a row of 9 to 15 values given to :func:`step_rows` takes two, the second
shifted back."""
SMALL_SETS = 2
"""Accumulator sets of a :data:`SMALL` tile: entries go to the sets in turn, so that consecutive
multiply-adds do not wait on each other (one vector of accumulators is one latency chain otherwise)."""

_CONTRACT = {"contract"}  # fused multiply-add; each accumulator's sum keeps its order


def slp_compiled(dispatcher: Any) -> Any:
    """Have every compilation of the Numba ``dispatcher`` (typed calls from Python or from other
    compiled functions) run LLVM's SLP vectorizer; other functions keep Numba's default.

    Numba reads the setting when it optimises a module; the global compiler lock (reentrant, held by
    every Numba compilation) keeps other compilations from seeing it changed.
    """
    plain_compile = dispatcher.compile

    def compile_with_slp(sig: Any) -> Any:
        with global_compiler_lock:
            previous = numba_config.SLP_VECTORIZE  # type: ignore[attr-defined]  # set at import by Numba
            numba_config.SLP_VECTORIZE = 1  # type: ignore[attr-defined]
            try:
                return plain_compile(sig)
            finally:
                numba_config.SLP_VECTORIZE = previous  # type: ignore[attr-defined]

    dispatcher.compile = compile_with_slp
    return dispatcher


@njit(cache=True, nogil=True, inline="always")
def nibble_step(steps, pair, half, e):  # pragma: no cover - compiled
    """``(step, e)``: the step in ``half`` (0: lower 4 bits) of byte ``pair`` of compact ``steps``,
    or, where those bits are 0 (an escape), ``steps[e]`` with ``e`` advanced past it.

    Without a branch: ``steps[e]`` is read either way (``steps`` ends in a spare byte for the last
    escape's read ahead) and masked in. Escapes come at
    about every tenth entry with no pattern to predict, and a branch on them ran a whole FC-A task
    at batch 1 about 2.6x slower than one-byte steps (the branch predictor learns one layer's
    pattern in a loop over that layer alone: timed so, it cost 10%)."""
    n = (pair >> np.uint64(4 * half)) & np.uint64(15)
    escape = np.uint64(n == 0)
    n |= np.uint64(steps[e]) & (np.uint64(0) - escape)  # all ones where escaped
    return n, e + escape


def _tile_source(name: str, width: int, base: str, setup: str = "", sets: int = 1) -> str:
    """Source of ``name(lo, hi, index, vals, src, dst, x0, stride)``: ``dst[x0 + i] = sum_{k=lo}^{hi-1}
    vals[k] * src[base_k + x0 + i]`` for ``i < width``, with ``base`` the statement(s) that set ``s =
    base_k + x0`` (unsigned) for entry ``k`` after ``setup`` ran once. Unsigned indices: Numba adds no
    negative-index checks, which would keep LLVM from seeing the loads as consecutive.

    With ``sets > 1`` the entries are taken ``sets`` at a time, the ``j``-th of each group into
    accumulator set ``j`` (the last few into set 0), and the sets are added at the end."""
    lines = [f"def {name}(lo, hi, index, vals, src, dst, x0, stride):", "    x = np.uint64(x0)"]
    lines += [f"    {setup}"] if setup else []
    lines += [f"    a{j}_{i} = np.float32(0.0)" for j in range(sets) for i in range(width)]

    def entry(k: str, j: int, indent: str) -> list[str]:
        head = [f"{indent}k = {k}"] if k != "k" else []
        body = [f"{indent}v = value_at(vals, k)", f"{indent}{base}"]
        return head + body + [f"{indent}a{j}_{i} += v * src[s + np.uint64({i})]" for i in range(width)]

    if sets > 1:
        lines += [f"    groups = (hi - lo) // {sets}", "    for g in range(groups):"]
        for j in range(sets):
            lines += entry(f"lo + {sets} * g + {j}", j, "        ")
        lines += [f"    for k in range(lo + {sets} * groups, hi):"]
    else:
        lines += ["    for k in range(lo, hi):"]
    lines += entry("k", 0, "        ")
    total = " + ".join(f"a{j}_{{i}}" for j in range(sets))
    lines += [f"    dst[x + np.uint64({i})] = " + total.format(i=i) for i in range(width)]
    return "\n".join(lines) + "\n"


def _nibble_tile_source(name: str, width: int, sets: int = 1) -> str:
    """Source of ``name(lo, hi, steps, escape, vals, src, dst, x0, stride)``: as :func:`_tile_source`
    with ``base_k = col_k * stride``, the steps held compact (4 bits, escapes from ``steps[escape]`` on;
    see :class:`~rsn2.inference.packed.DeltaCSR`). Entries go in pairs, one byte of steps each
    (``lo`` and ``hi - lo`` are even); with ``sets == 2`` a pair's second entry sums into set 1."""
    lines = [f"def {name}(lo, hi, steps, escape, vals, src, dst, x0, stride):", "    x = np.uint64(x0)"]
    lines += ["    col = np.uint64(0)", "    e = np.uint64(escape)", "    first = np.uint64(lo) >> np.uint64(1)"]
    lines += [f"    a{j}_{i} = np.float32(0.0)" for j in range(sets) for i in range(width)]
    lines += ["    for g in range((hi - lo) // 2):", "        pair = np.uint64(steps[first + np.uint64(g)])"]
    for half in range(2):
        j = half if sets > 1 else 0
        lines += [
            f"        n, e = nibble_step(steps, pair, {half}, e)",
            "        col += n",
            f"        v = value_at(vals, lo + 2 * g + {half})",
            "        s = col * np.uint64(stride) + x",
        ]
        lines += [f"        a{j}_{i} += v * src[s + np.uint64({i})]" for i in range(width)]
    total = " + ".join(f"a{j}_{{i}}" for j in range(sets))
    lines += [f"    dst[x + np.uint64({i})] = " + total.format(i=i) for i in range(width)]
    return "\n".join(lines) + "\n"


def _compiled_tile(name: str, width: int, base: str, setup: str = "", sets: int = 1) -> Any:
    return _jit_tile(name, _tile_source(name, width, base, setup, sets))


SOURCES: dict[str, str] = {}
"""Name -> Python source of every tile function generated here (``python -m rsn2.inference.generated``)."""


def _jit_tile(name: str, source: str) -> Any:
    SOURCES[name] = source
    namespace: dict[str, Any] = {"np": np, "nibble_step": nibble_step, "value_at": value_at}
    exec(compile(source, f"<rsn2 tile {name}>", "exec"), namespace)
    return njit(inline="always", fastmath=_CONTRACT, boundscheck=False, nogil=True)(namespace[name])


_TAP = "s = np.uint64(index[k]) + x"  # index: uint32 tap offsets
_STEP = "col += index[k]; s = col * np.uint64(stride) + x"  # index: uint8 column steps
_tap_wide = _compiled_tile("tap_wide", WIDE, _TAP)
_tap_mid = _compiled_tile("tap_mid", MID, _TAP)
_tap_narrow = _compiled_tile("tap_narrow", NARROW, _TAP)
_step_wide = _compiled_tile("step_wide", WIDE, _STEP, "col = np.uint64(0)")
_step_mid = _compiled_tile("step_mid", MID, _STEP, "col = np.uint64(0)")
_step_narrow = _compiled_tile("step_narrow", NARROW, _STEP, "col = np.uint64(0)")
_step_small = _compiled_tile("step_small", SMALL, _STEP, "col = np.uint64(0)", SMALL_SETS)
_nibble_wide = _jit_tile("nibble_wide", _nibble_tile_source("nibble_wide", WIDE))
_nibble_mid = _jit_tile("nibble_mid", _nibble_tile_source("nibble_mid", MID))
_nibble_narrow = _jit_tile("nibble_narrow", _nibble_tile_source("nibble_narrow", NARROW))
_nibble_small = _jit_tile("nibble_small", _nibble_tile_source("nibble_small", SMALL, SMALL_SETS))


@njit(cache=True, nogil=True)
def tile_width(n):  # pragma: no cover - compiled
    """Columns that hold ``n`` samples feature-major: ``n`` from :data:`NARROW` up; fewer samples are
    padded to the one :data:`SMALL` or :data:`NARROW` tile that covers them (the extra columns hold
    zeros, their outputs are dropped). A tile is one pass over a row's entries whatever its width,
    while the row gather makes one pass per four samples (:mod:`rsn2.inference.row_sums`; where
    each wins: :class:`~rsn2.inference.SparsePolicy`; why 9 to 15 samples take one tile of 16:
    ``docs/decisions/feature-major-tiles.md``)."""
    if n >= NARROW:
        return n
    return SMALL if n <= SMALL else NARROW


@njit(cache=True, nogil=True, inline="always")
def _next_tile(x0, width):  # pragma: no cover - compiled
    """``(kind, start, size)`` of the tile that covers values from ``x0`` on, in a row of ``width >=
    NARROW`` values: the widest tile that fits from ``x0``, or, for the rest of the row, the narrowest
    one that covers it in one go, shifted back to end at ``width`` (it recomputes values before ``x0``
    rather than read past ``width``). Each tile is one pass over the row's entries, so one wide
    pass beats several narrow ones. Kinds: 3 wide, 2 mid, 1 narrow."""
    rest = width - x0
    if rest >= WIDE:
        return 3, x0, WIDE
    if rest > MID and width >= WIDE:
        return 3, width - WIDE, WIDE
    if rest >= MID:
        return 2, x0, MID
    if rest > NARROW and width >= MID:
        return 2, width - MID, MID
    if rest >= NARROW:
        return 1, x0, NARROW
    return 1, width - NARROW, NARROW


@slp_compiled
@njit(cache=True, nogil=True, fastmath=_CONTRACT, boundscheck=False)
def tap_rows(lo, hi, offsets, vals, src, dst, span):  # pragma: no cover - compiled
    """``dst[x] = sum_k vals[k] * src[offsets[k] + x]`` for ``x < span``, over entries ``lo:hi``: one filter
    of a stride-1 convolution on a padded plane (see :func:`~rsn2.inference.kernels.conv2d_wide`).

    Tiles chosen by :func:`_next_tile` (wide ones while they fit, then one or two for the rest).
    Rows narrower than :data:`NARROW` are one multiply-add per entry over the row.
    Reads ``src[offsets[k] : offsets[k] + span]`` only; writes ``dst[:span]`` only.
    """
    if span < NARROW:
        for x in range(span):
            dst[x] = 0.0
        for k in range(lo, hi):
            v = value_at(vals, k)
            start = offsets[k]
            for x in range(span):
                dst[x] += v * src[start + x]
        return
    x0 = 0
    while x0 < span:
        kind, start, size = _next_tile(x0, span)
        if kind == 3:
            _tap_wide(lo, hi, offsets, vals, src, dst, start, 0)
        elif kind == 2:
            _tap_mid(lo, hi, offsets, vals, src, dst, start, 0)
        else:
            _tap_narrow(lo, hi, offsets, vals, src, dst, start, 0)
        x0 = start + size


@slp_compiled
@njit(cache=True, nogil=True, fastmath=_CONTRACT, boundscheck=False)
def step_rows(lo, hi, steps, vals, src, dst, width):  # pragma: no cover - compiled
    """``dst[j] = sum_k vals[k] * src[col_k, j]`` for ``j < width``, over entries ``lo:hi`` of one packed
    row (``col_k`` the running sum of ``steps``): a linear layer's row on activations held
    ``(features, batch)``. ``src`` is 2-D and C-contiguous with at least ``width`` columns; tiles as
    :func:`tap_rows`, and rows of :data:`SMALL` to :data:`NARROW` - 1 values as two :data:`SMALL`
    tiles (the second shifted back to the row's end). Narrower rows are one multiply-add per entry
    over the row."""
    flat = src.reshape(-1)
    stride = src.shape[1]
    if width < NARROW:
        if width >= SMALL:
            _step_small(lo, hi, steps, vals, flat, dst, 0, stride)
            if width > SMALL:
                _step_small(lo, hi, steps, vals, flat, dst, width - SMALL, stride)
            return
        for j in range(width):
            dst[j] = 0.0
        col = np.uint64(0)
        for k in range(lo, hi):
            col += steps[k]
            v = value_at(vals, k)
            row = src[col]
            for j in range(width):
                dst[j] += v * row[j]
        return
    x0 = 0
    while x0 < width:
        kind, start, size = _next_tile(x0, width)
        if kind == 3:
            _step_wide(lo, hi, steps, vals, flat, dst, start, stride)
        elif kind == 2:
            _step_mid(lo, hi, steps, vals, flat, dst, start, stride)
        else:
            _step_narrow(lo, hi, steps, vals, flat, dst, start, stride)
        x0 = start + size


@slp_compiled
@njit(cache=True, nogil=True, fastmath=_CONTRACT, boundscheck=False)
def nibble_rows(lo, hi, steps, escape, vals, src, dst, width):  # pragma: no cover - compiled
    """:func:`step_rows` for a row of a compact :class:`~rsn2.inference.packed.DeltaCSR` (4-bit steps,
    the row's escaped ones from ``steps[escape]`` on; ``lo`` and ``hi - lo`` even)."""
    flat = src.reshape(-1)
    stride = src.shape[1]
    if width < NARROW:
        if width >= SMALL:
            _nibble_small(lo, hi, steps, escape, vals, flat, dst, 0, stride)
            if width > SMALL:
                _nibble_small(lo, hi, steps, escape, vals, flat, dst, width - SMALL, stride)
            return
        for j in range(width):
            dst[j] = 0.0
        col = np.uint64(0)
        e = np.uint64(escape)
        for k in range(lo, hi):
            pair = np.uint64(steps[np.uint64(k) >> np.uint64(1)])
            n, e = nibble_step(steps, pair, k & 1, e)
            col += n
            v = value_at(vals, k)
            row = src[col]
            for j in range(width):
                dst[j] += v * row[j]
        return
    x0 = 0
    while x0 < width:
        kind, start, size = _next_tile(x0, width)
        if kind == 3:
            _nibble_wide(lo, hi, steps, escape, vals, flat, dst, start, stride)
        elif kind == 2:
            _nibble_mid(lo, hi, steps, escape, vals, flat, dst, start, stride)
        else:
            _nibble_narrow(lo, hi, steps, escape, vals, flat, dst, start, stride)
        x0 = start + size
