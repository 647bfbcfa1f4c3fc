"""Sums of one packed row against a few samples: the inner loop of the row gather.

For a row of a :class:`~rsn2.inference.packed.DeltaCSR` and samples ``x`` (``(B, K)``, one per row of
``x``), ``out[b, r] = sum_k vals[k] * x[b, col_k]``. One sample runs four independent accumulation
chains (:func:`row_sum`); two to four samples share one pass over the row (the functions made by
:func:`_group_source`): each entry's step and value are read once for all of them, so an entry costs
one input load and one multiply-add per sample instead of three loads per sample. Larger batches go
in groups of four (the policy sends them feature-major before that matters). Why this form:
``docs/decisions/row-gather.md``.

Like :mod:`rsn2.inference.tiles`, the group functions are generated from one template; the kernels'
on-disk cache is keyed on this module's source too (:mod:`rsn2.inference.jit`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rsn2.inference.jit import njit
from rsn2.inference.tiles import nibble_step
from rsn2.inference.values import value_at

GROUP = 4
"""Most samples summed in one pass over a row."""


@njit(cache=True, nogil=True, inline="always", boundscheck=False)
def row_sum(lo, hi, steps, vals, xb):  # pragma: no cover - compiled
    """``sum_k vals[k] * xb[col_k]`` over entries ``lo:hi`` of one row, ``col_k`` the running sum of
    ``steps``: four entries at a time into four independent accumulation chains, the last few into
    the first. Unsigned indices, so Numba adds no negative-index wraparound checks.

    Each entry is three loads (step, value, input); the four chains keep them independent of each
    multiply-add's latency (``docs/decisions/row-gather.md``)."""
    a0 = np.float32(0.0)
    a1 = np.float32(0.0)
    a2 = np.float32(0.0)
    a3 = np.float32(0.0)
    rv = vals[lo:hi]
    rs = steps[lo:hi]
    col = np.uint64(0)
    quads = (hi - lo) // 4
    for q in range(quads):
        j = np.uint64(4 * q)
        col += rs[j + 0]
        a0 += value_at(rv, j + 0) * xb[col]
        col += rs[j + 1]
        a1 += value_at(rv, j + 1) * xb[col]
        col += rs[j + 2]
        a2 += value_at(rv, j + 2) * xb[col]
        col += rs[j + 3]
        a3 += value_at(rv, j + 3) * xb[col]
    for j in range(4 * quads, hi - lo):
        col += rs[j]
        a0 += value_at(rv, j) * xb[col]
    return (a0 + a1) + (a2 + a3)


@njit(cache=True, nogil=True, inline="always", boundscheck=False)
def row_sum_nibbles(lo, hi, steps, escape, vals, xb):  # pragma: no cover - compiled
    """:func:`row_sum` over a row of a compact :class:`~rsn2.inference.packed.DeltaCSR` (4-bit steps,
    the row's escaped ones from ``steps[escape]`` on; ``lo`` and ``hi - lo`` even): two bytes of
    steps per four entries. Decoding the steps is what the compact form costs here."""
    a0 = np.float32(0.0)
    a1 = np.float32(0.0)
    a2 = np.float32(0.0)
    a3 = np.float32(0.0)
    rv = vals[lo:hi]
    first = np.uint64(lo) >> np.uint64(1)
    e = np.uint64(escape)
    col = np.uint64(0)
    quads = (hi - lo) // 4
    for q in range(quads):
        j = np.uint64(4 * q)
        b0 = np.uint64(steps[first + np.uint64(2 * q)])
        b1 = np.uint64(steps[first + np.uint64(2 * q + 1)])
        n, e = nibble_step(steps, b0, 0, e)
        col += n
        a0 += value_at(rv, j + 0) * xb[col]
        n, e = nibble_step(steps, b0, 1, e)
        col += n
        a1 += value_at(rv, j + 1) * xb[col]
        n, e = nibble_step(steps, b1, 0, e)
        col += n
        a2 += value_at(rv, j + 2) * xb[col]
        n, e = nibble_step(steps, b1, 1, e)
        col += n
        a3 += value_at(rv, j + 3) * xb[col]
    if (hi - lo) % 4:  # one pair left
        j = np.uint64(4 * quads)
        b0 = np.uint64(steps[first + np.uint64(2 * quads)])
        n, e = nibble_step(steps, b0, 0, e)
        col += n
        a0 += value_at(rv, j) * xb[col]
        n, e = nibble_step(steps, b0, 1, e)
        col += n
        a1 += value_at(rv, j + 1) * xb[col]
    return (a0 + a1) + (a2 + a3)


def _group_source(name: str, samples: int, compact: bool) -> str:
    """Source of ``name(lo, hi, steps, escape, vals, x, b0, out, r)``: ``out[b0 + i, r] = sum_k vals[k]
    * x[b0 + i, col_k]`` for ``i < samples``, over entries ``lo:hi`` of one row, in one pass. Entries
    go in pairs, the pair's first into one accumulation chain per sample and its second into another
    (a multiply-add waits on the one before it in its chain). ``compact``: 4-bit steps (``escape``
    where the row's escaped steps start; rows of even length), else one byte each (``escape``
    unused; an odd row's last entry after the pairs)."""
    each = range(samples)
    lines = [f"def {name}(lo, hi, steps, escape, vals, x, b0, out, r):"]
    lines += [f"    x{i} = x[b0 + {i}]" for i in each]
    lines += [f"    a{c}_{i} = np.float32(0.0)" for c in range(2) for i in each]
    lines += ["    col = np.uint64(0)", "    e = np.uint64(escape)", "    first = np.uint64(lo) >> np.uint64(1)"]
    lines += ["    for q in range((hi - lo) // 2):", "        k = np.uint64(lo + 2 * q)"]
    if compact:
        lines += ["        pair = np.uint64(steps[first + np.uint64(q)])"]
    for c in range(2):
        if compact:
            lines += [f"        n, e = nibble_step(steps, pair, {c}, e)", "        col += n"]
        else:
            lines += [f"        col += steps[k + np.uint64({c})]"]
        lines += [f"        v = value_at(vals, k + np.uint64({c}))"]
        lines += [f"        a{c}_{i} += v * x{i}[col]" for i in each]
    if not compact:
        lines += [
            "    if (hi - lo) % 2:",
            "        k = np.uint64(hi - 1)",
            "        col += steps[k]",
            "        v = value_at(vals, k)",
        ]
        lines += [f"        a0_{i} += v * x{i}[col]" for i in each]
    lines += [f"    out[b0 + {i}, r] = a0_{i} + a1_{i}" for i in each]
    return "\n".join(lines) + "\n"


SOURCES: dict[str, str] = {}
"""Name -> Python source of every group function generated here (``python -m rsn2.inference.generated``)."""


def _compiled_group(samples: int, compact: bool) -> Any:
    name = f"{'nibble' if compact else 'byte'}_group_{samples}"
    SOURCES[name] = source = _group_source(name, samples, compact)
    namespace: dict[str, Any] = {"np": np, "nibble_step": nibble_step, "value_at": value_at}
    exec(compile(source, f"<rsn2 row sums {name}>", "exec"), namespace)
    return njit(inline="always", boundscheck=False, nogil=True)(namespace[name])


_byte_2, _byte_3, _byte_4 = (_compiled_group(n, False) for n in (2, 3, 4))
_nibble_2, _nibble_3, _nibble_4 = (_compiled_group(n, True) for n in (2, 3, 4))


@njit(cache=True, nogil=True, inline="always")
def packed_row_sum(r, row_ptr, steps, escapes, vals, xb):  # pragma: no cover - compiled
    """Row ``r``'s sum ``sum_k vals[k] * xb[col_k]`` for one sample, steps in either form (``escapes``
    empty: one byte each). Callers loop over rows with this for one sample and with
    :func:`packed_rows` for more (one loop holding both was slower at batch 1:
    ``docs/decisions/row-gather.md``)."""
    if escapes.shape[0] > 0:
        return row_sum_nibbles(row_ptr[r], row_ptr[r + 1], steps, escapes[r], vals, xb)
    return row_sum(row_ptr[r], row_ptr[r + 1], steps, vals, xb)


@njit(cache=True, nogil=True, inline="always")
def packed_rows(r, row_ptr, steps, escapes, vals, x, out):  # pragma: no cover - compiled
    """``out[b, r] = sum_k vals[k] * x[b, col_k]`` over row ``r``'s entries for every sample ``b`` of
    ``x`` (``(B, K)``), in passes over the row of up to :data:`GROUP` samples; steps in either form
    (``escapes`` empty: one byte each). For one sample, :func:`packed_row_sum` is faster."""
    lo = row_ptr[r]
    hi = row_ptr[r + 1]
    compact = escapes.shape[0] > 0
    escape = escapes[r] if compact else 0
    n_b = x.shape[0]
    b0 = 0
    while b0 < n_b:
        size = min(GROUP, n_b - b0)
        if size == 1:
            if compact:
                out[b0, r] = row_sum_nibbles(lo, hi, steps, escape, vals, x[b0])
            else:
                out[b0, r] = row_sum(lo, hi, steps, vals, x[b0])
        elif size == 2:
            if compact:
                _nibble_2(lo, hi, steps, escape, vals, x, b0, out, r)
            else:
                _byte_2(lo, hi, steps, escape, vals, x, b0, out, r)
        elif size == 3:
            if compact:
                _nibble_3(lo, hi, steps, escape, vals, x, b0, out, r)
            else:
                _byte_3(lo, hi, steps, escape, vals, x, b0, out, r)
        elif compact:
            _nibble_4(lo, hi, steps, escape, vals, x, b0, out, r)
        else:
            _byte_4(lo, hi, steps, escape, vals, x, b0, out, r)
        b0 += size
