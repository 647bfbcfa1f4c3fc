"""Compiled sparse kernels (Numba) for one subnetwork's share of a layer.

The packed format (see :mod:`rsn2.inference.packed`) is a delta-coded CSR: row ``r`` owns entries
``row_ptr[r]:row_ptr[r + 1]``, each a float32 value and a uint8 column step (or, in the compact form,
a 4-bit step with longer ones escaped); an entry's column is the running sum of its row's steps.
Bridge entries (value 0) span gaps wider than 255 columns.

A few samples run a row-parallel gather (:mod:`rsn2.inference.row_sums`), more a feature-major
product (activations as ``(features, batch)``, register tiles over the batch); convolutions run
directly on the padded input (no im2col copy), register tiles over output columns. The tiled inner
loops live in :mod:`rsn2.inference.tiles`. Why these: ``docs/decisions/row-gather.md`` and
``docs/decisions/feature-major-tiles.md``.
"""

from __future__ import annotations

import os
import threading

import numba
import numpy as np
import torch
from numba import prange

from rsn2.inference.jit import njit
from rsn2.inference.op_table import (
    CONV,
    CONV_CHANNELS,
    CONV_FILTERS,
    CONV_HEIGHT,
    CONV_OUT_HEIGHT,
    CONV_OUT_WIDTH,
    CONV_PAD_LEFT,
    CONV_PAD_TOP,
    CONV_PADDED_HEIGHT,
    CONV_PADDED_WIDTH,
    CONV_RELU,
    CONV_SPAN,
    CONV_WIDTH,
    KIND,
    LAYER,
    LINEAR,
    LINEAR_FEATURE_MAJOR_FROM,
    LINEAR_INPUTS,
    LINEAR_OUTPUTS,
    LINEAR_RELU,
    POOL,
    POOL_CHANNELS,
    POOL_HEIGHT,
    POOL_KERNEL,
    POOL_OUT_HEIGHT,
    POOL_OUT_WIDTH,
    POOL_STRIDE,
    POOL_WIDTH,
    RELU,
    RELU_ELEMENTS,
)
from rsn2.inference.row_sums import packed_row_sum, packed_rows
from rsn2.inference.tiles import nibble_rows, step_rows, tap_rows, tile_width
from rsn2.inference.values import value_at

_threads_ready = False
_thread_count = threading.local()  # what this thread last gave numba.set_num_threads (a per-thread setting)

FINITE_SAFE = {"nsz", "arcp", "contract", "afn", "reassoc"}
"""Numba fast-math flags short of assuming no NaN or infinity: sums may be reordered and fused, while
NaNs still propagate through ReLU and max pooling as they do in PyTorch."""


def prepare_threads() -> None:
    """Match Numba's thread count to PyTorch's; start Numba's pool with passive waiting.

    Numba's OpenMP pool is separate from PyTorch's; spinning, its idle threads would take the cores
    PyTorch's next kernels run on (``docs/decisions/threads.md``). The pool reads ``OMP_WAIT_POLICY``
    once, when it starts, so it is set for that moment only, and a value the user set is kept.
    Numba's thread count is a setting of the calling thread; each thread sets it when PyTorch's
    count differs from what that thread last set.
    """
    global _threads_ready
    if not _threads_ready:
        previous = os.environ.get("OMP_WAIT_POLICY")
        torch_threads = torch.get_num_threads()
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            _warm(np.zeros(2, dtype=np.float32))
        finally:
            if previous is None:
                del os.environ["OMP_WAIT_POLICY"]
            if torch.get_num_threads() != torch_threads:  # starting the pool can reset the OpenMP count
                torch.set_num_threads(torch_threads)
        _threads_ready = True
    wanted = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    if getattr(_thread_count, "value", None) != wanted:
        numba.set_num_threads(wanted)
        _thread_count.value = wanted


@njit(parallel=True, cache=True)
def _warm(a):  # pragma: no cover - compiled
    for i in prange(a.shape[0]):
        a[i] = i


@njit(cache=True, nogil=True, inline="always")
def _packed_step_rows(r, row_ptr, steps, escapes, vals, src, dst, width):  # pragma: no cover - compiled
    """Row ``r`` over activations held ``(features, batch)`` (:func:`~rsn2.inference.tiles.step_rows`),
    in whichever form the steps are held."""
    if escapes.shape[0] > 0:
        nibble_rows(row_ptr[r], row_ptr[r + 1], steps, escapes[r], vals, src, dst, width)
    else:
        step_rows(row_ptr[r], row_ptr[r + 1], steps, vals, src, dst, width)


@njit(cache=True, nogil=True, fastmath=FINITE_SAFE, boundscheck=False)
def _dense_dot(lo, hi, vals, xb):  # pragma: no cover - compiled
    """``sum_k vals[lo + k] * xb[k]`` for ``k < hi - lo``: one row of a dense kernel (vectorised)."""
    acc = np.float32(0.0)
    for k in range(hi - lo):
        acc += value_at(vals, lo + k) * xb[k]
    return acc


@njit(parallel=True, cache=True, nogil=True)
def rows_gather(row_ptr, blocks, steps, escapes, vals, x, out):  # pragma: no cover - compiled
    """``out[b, r] = sum_k vals[k] * x[b, col_k]`` over row ``r``'s entries, for a few samples.

    Shapes: ``row_ptr (R + 1,)``; ``blocks (n_blocks + 1,)``, row boundaries of blocks holding
    about equal numbers of entries (the parallel unit); ``vals (entries,)``; ``steps`` and
    ``escapes`` as a :class:`~rsn2.inference.packed.DeltaCSR` holds them (``escapes`` empty: one
    byte per step); ``x (B, K)``; ``out (B, R)``. Up to four samples per pass over a row
    (:func:`~rsn2.inference.row_sums.packed_rows`), scalar accumulators, no SIMD gathers (slower
    here).
    """
    one = x.shape[0] == 1
    for blk in prange(blocks.shape[0] - 1):
        if one:
            for r in range(blocks[blk], blocks[blk + 1]):
                out[0, r] = packed_row_sum(r, row_ptr, steps, escapes, vals, x[0])
        else:
            for r in range(blocks[blk], blocks[blk + 1]):
                packed_rows(r, row_ptr, steps, escapes, vals, x, out)


def feature_major_input(x: np.ndarray, rows: int) -> np.ndarray:
    """``x`` ``(N, K)`` laid out for the feature-major kernels: a new float32 ``(rows, tile_width(N))``
    array (``rows >= K``) holding ``x.T`` in its first ``K`` rows and ``N`` columns. Those rows' other
    columns (fewer than 16 samples are padded to one tile, see
    :func:`~rsn2.inference.tiles.tile_width`) hold zeros, whose outputs the caller drops; rows past
    ``K`` are left for the kernels to write."""
    n, k = x.shape
    out = np.empty((rows, tile_width(n)), dtype=np.float32)
    out[:k, :n] = x.T
    out[:k, n:] = 0.0
    return out


@njit(parallel=True, fastmath=True, cache=True, nogil=True, boundscheck=False)
def feature_major(row_ptr, blocks, steps, escapes, vals, xt, out_t):  # pragma: no cover - compiled
    """``out_t[r, :] = sum_k vals[k] * xt[col_k, :]`` over row ``r``'s entries, for many samples.

    Shapes: ``xt (K, B)`` and ``out_t (R, B)``, both C-contiguous; register tiles over ``B``
    (:func:`~rsn2.inference.tiles.step_rows`); the packed arrays as for :func:`rows_gather`.
    """
    width = xt.shape[1]
    for blk in prange(blocks.shape[0] - 1):
        for r in range(blocks[blk], blocks[blk + 1]):
            _packed_step_rows(r, row_ptr, steps, escapes, vals, xt, out_t[r], width)


@njit(cache=True, nogil=True, inline="always")
def _tap(col, kh, kw):  # pragma: no cover - compiled
    """``(ci, i, j)``: input channel and kernel row and column of a conv column ``(ci * kh + i) * kw + j``."""
    return col // (kw * kh), (col // kw) % kh, col % kw


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def conv2d_direct(row_ptr, steps, vals, xp, out, kh, kw, sh, sw, dh, dw):  # pragma: no cover - compiled
    """Sparse 2-D convolution on an already padded input.

    ``out[b, o, y, x] = sum_k vals[k] * xp[b, ci, y * sh + i * dh, x * sw + j * dw]`` over filter
    ``o``'s entries, where the entry's column (the running sum of ``steps``) encodes ``(ci, i, j)``
    as ``(ci * kh + i) * kw + j``. Shapes: ``xp (B, C_in, H_p, W_p)``, ``out (B, C_out, H_out, W_out)``.
    """
    n_b = out.shape[0]
    n_o = out.shape[1]
    h_out = out.shape[2]
    w_out = out.shape[3]
    for job in prange(n_b * n_o):
        b = job // n_o
        o = job % n_o
        dst = out[b, o]
        dst[:, :] = 0.0
        col = 0
        for k in range(row_ptr[o], row_ptr[o + 1]):
            col += steps[k]
            v = value_at(vals, k)
            if v != 0.0:  # skips bridge entries
                ci, i, j = _tap(col, kh, kw)
                src = xp[b, ci]
                for y in range(h_out):
                    row = src[y * sh + i * dh]
                    d = dst[y]
                    off = j * dw
                    for x in range(w_out):
                        d[x] += v * row[x * sw + off]


@njit(parallel=True, fastmath=FINITE_SAFE, cache=True, nogil=True, boundscheck=False)
def conv2d_wide(row_ptr, offsets, vals, planes, out, span):  # pragma: no cover - compiled
    """Sparse 2-D convolution with stride 1 on an already padded input, on the input's full width.

    Output row ``y`` of filter ``o`` is computed over all ``W_p`` columns of the padded input, so
    that each kept weight reads one contiguous stretch of the plane (summed in register tiles by
    :func:`~rsn2.inference.tiles.tap_rows`): ``out[b, o, y * W_p + x] =
    sum_k vals[k] * planes[b, offsets[k] + y * W_p + x]``, where ``offsets[k] = (ci * H_p + i * dh)
    * W_p + j * dw`` is where entry ``k``'s tap ``(ci, i, j)`` starts (see
    :meth:`~rsn2.inference.DeltaCSR.conv_offsets`). Only the first ``span = (H_out - 1) * W_p +
    W_out`` values of each filter are written; columns ``x >= W_out`` of a row hold no output (the
    caller crops them). Shapes: ``planes (B, C_in * H_p * W_p)``, ``out (B, C_out, >= H_out * W_p)``.
    """
    n_b = planes.shape[0]
    n_o = out.shape[1]
    for job in prange(n_b * n_o):
        b = job // n_o
        o = job % n_o
        tap_rows(row_ptr[o], row_ptr[o + 1], offsets, vals, planes[b], out[b, o], span)


SERIAL_ENTRIES = 16384
"""A fused linear op with at most this many entries times samples runs on one thread (a task's head)."""


@njit(cache=True, nogil=True, inline="always")
def _linear_op(op, ptrs, blocks, steps, escapes, vals, biases):  # pragma: no cover - compiled
    """``(relu, row_ptr, blocks, steps, escapes, vals, bias)`` of the linear op ``op`` (a row of the op table)."""
    layer = op[LAYER]
    return op[LINEAR_RELU], ptrs[layer], blocks[layer], steps[layer], escapes[layer], vals[layer], biases[layer]


@njit(cache=True, nogil=True, inline="always", fastmath={"contract"}, boundscheck=False)
def _linear_rows(r0, r1, row_ptr, st, esc, vl, bias, relu, src, dst):  # pragma: no cover - compiled
    """Rows ``r0:r1`` of a fused linear op for every sample: row gather (or dense rows when ``st``
    is empty), bias, ReLU."""
    if st.shape[0] == 0:
        for r in range(r0, r1):
            for b in range(src.shape[0]):
                dst[b, r] = _dense_dot(row_ptr[r], row_ptr[r + 1], vl, src[b])
    elif src.shape[0] == 1:
        for r in range(r0, r1):
            dst[0, r] = packed_row_sum(r, row_ptr, st, esc, vl, src[0])
    else:
        for r in range(r0, r1):
            packed_rows(r, row_ptr, st, esc, vl, src, dst)
    for r in range(r0, r1):
        add = bias[r] if bias.shape[0] > 0 else np.float32(0.0)
        for b in range(src.shape[0]):
            y = dst[b, r] + add
            if relu and y < 0:
                y = np.float32(0.0)
            dst[b, r] = y


@njit(cache=True, nogil=True, fastmath={"contract"}, boundscheck=False)
def _linear_rows_serial(row_ptr, st, esc, vl, bias, relu, src, dst):  # pragma: no cover - compiled
    """Every row of a small fused linear op (a head's) on the calling thread: :func:`_linear_rows`
    compiled once here rather than inlined a second time into :func:`run_fused`, whose compilation
    time grows with every inlined copy of the row sums."""
    _linear_rows(0, row_ptr.shape[0] - 1, row_ptr, st, esc, vl, bias, relu, src, dst)


@njit(parallel=True, fastmath={"contract"}, cache=True, nogil=True, boundscheck=False)
def run_fused(
    ops, ptrs, blocks, steps, escapes, offsets, vals, biases, act_a, act_b, pad, wide, lin_in, lin_out
):  # pragma: no cover
    """A run of layers in one compiled call, each sample's activations flat in C order.

    ``ops`` (the op table of :mod:`rsn2.inference.op_table`, one row per layer) lists the layers in
    turn; op ``i`` reads ``act_a`` and writes ``act_b`` when ``i`` is even, the other way round when
    odd. By kind:

    - ``CONV``: the input is copied into ``pad`` when padded, then each filter runs as in
      :func:`conv2d_wide` into ``wide`` and is cropped, biased and rectified into the output.
    - ``POOL``: max pooling (NaN propagates, as in torch).
    - ``LINEAR``: the row gather of :func:`rows_gather`, biased and rectified; a layer given no
      steps (an empty ``steps[l]``) is dense: row ``r`` holds all its inputs' columns. From
      ``feature_major_from`` samples on, a packed layer runs feature-major instead (as
      :func:`feature_major`: one pass over its entries for all samples, where the row gather makes
      one per four samples), its input transposed into ``lin_in`` (padded with zeros to
      :func:`~rsn2.inference.tiles.tile_width` columns) and its output summed in ``lin_out``.
    - ``RELU``: on its own.

    Per layer ``l``: ``ptrs[l]`` row pointers; ``blocks[l]`` parallel row blocks, ``steps[l]``
    column steps and ``escapes[l]`` (empty unless the steps are compact; see
    :class:`~rsn2.inference.packed.DeltaCSR`) (linear); ``offsets[l]`` tap offsets (conv, one per
    entry: a dense kernel is one with every column's); ``vals[l]`` values; ``biases[l]``
    (empty for none). Buffers: ``act_a``, ``act_b`` ``(B, >= widest activation)``, the input in
    ``act_a``; ``pad``, ``wide`` ``(B, >= largest padded input / wide output)``; ``lin_in``,
    ``lin_out`` flat, ``>= tile_width(B) *`` the most inputs / outputs of a packed linear op when
    ``B >= F`` (else unused). Returns which buffer holds the output (0: ``act_a``, 1: ``act_b``).

    Compiled with contraction (fused multiply-add) as its only fast-math flag: sums keep their
    order (``docs/decisions/fused-runs.md``).
    """
    n_b = act_a.shape[0]
    for i in range(ops.shape[0]):
        src = act_a if i % 2 == 0 else act_b
        dst = act_b if i % 2 == 0 else act_a
        op = ops[i]
        kind, layer = op[KIND], op[LAYER]
        if kind == CONV:
            n_c, h, w = op[CONV_CHANNELS], op[CONV_HEIGHT], op[CONV_WIDTH]
            top, left, h_p, w_p = op[CONV_PAD_TOP], op[CONV_PAD_LEFT], op[CONV_PADDED_HEIGHT], op[CONV_PADDED_WIDTH]
            n_o, h_out, w_out = op[CONV_FILTERS], op[CONV_OUT_HEIGHT], op[CONV_OUT_WIDTH]
            span, relu = op[CONV_SPAN], op[CONV_RELU]
            padded = h_p != h or w_p != w
            if padded:
                for job in prange(n_b * n_c):
                    b = job // n_c
                    c = job % n_c
                    plane = pad[b, c * h_p * w_p : (c + 1) * h_p * w_p]
                    plane[:] = 0.0
                    for y in range(h):
                        for x in range(w):
                            plane[(y + top) * w_p + left + x] = src[b, (c * h + y) * w + x]
            source = pad if padded else src
            row_ptr = ptrs[layer]
            offs = offsets[layer]
            vl = vals[layer]
            bias = biases[layer]
            for job in prange(n_b * n_o):
                b = job // n_o
                o = job % n_o
                acc = wide[b, o * h_out * w_p : (o + 1) * h_out * w_p]
                tap_rows(row_ptr[o], row_ptr[o + 1], offs, vl, source[b], acc, span)
                add = bias[o] if bias.shape[0] > 0 else np.float32(0.0)
                out = dst[b, o * h_out * w_out : (o + 1) * h_out * w_out]
                for y in range(h_out):
                    for x in range(w_out):
                        v = acc[y * w_p + x] + add
                        if relu and v < 0:
                            v = np.float32(0.0)
                        out[y * w_out + x] = v
        elif kind == POOL:
            n_c, h, w = op[POOL_CHANNELS], op[POOL_HEIGHT], op[POOL_WIDTH]
            k, s, h_out, w_out = op[POOL_KERNEL], op[POOL_STRIDE], op[POOL_OUT_HEIGHT], op[POOL_OUT_WIDTH]
            for job in prange(n_b * n_c):
                b = job // n_c
                c = job % n_c
                for y in range(h_out):
                    for x in range(w_out):
                        m = src[b, (c * h + y * s) * w + x * s]
                        for di in range(k):
                            for dj in range(k):
                                v = src[b, (c * h + y * s + di) * w + x * s + dj]
                                if v > m or np.isnan(v):  # a NaN, once taken, is never replaced
                                    m = v
                        dst[b, (c * h_out + y) * w_out + x] = m
        elif kind == LINEAR:
            relu, row_ptr, blk, st, esc, vl, bias = _linear_op(op, ptrs, blocks, steps, escapes, vals, biases)
            if row_ptr[-1] * n_b <= SERIAL_ENTRIES:  # a head: waking the thread pool costs more
                _linear_rows_serial(row_ptr, st, esc, vl, bias, relu, src, dst)
            elif n_b >= op[LINEAR_FEATURE_MAJOR_FROM] and st.shape[0] > 0:
                n_in, n_out, width = op[LINEAR_INPUTS], op[LINEAR_OUTPUTS], tile_width(n_b)
                xt = lin_in[: n_in * width].reshape((n_in, width))
                yt = lin_out[: n_out * width].reshape((n_out, width))
                for f in prange(n_in):
                    for b in range(width):
                        xt[f, b] = src[b, f] if b < n_b else np.float32(0.0)
                for bi in prange(blk.shape[0] - 1):
                    for r in range(blk[bi], blk[bi + 1]):
                        _packed_step_rows(r, row_ptr, st, esc, vl, xt, yt[r], width)
                        add = bias[r] if bias.shape[0] > 0 else np.float32(0.0)
                        for b in range(n_b):
                            y = yt[r, b] + add
                            if relu and y < 0:
                                y = np.float32(0.0)
                            dst[b, r] = y
            else:
                for bi in prange(blk.shape[0] - 1):
                    _linear_rows(blk[bi], blk[bi + 1], row_ptr, st, esc, vl, bias, relu, src, dst)
        else:  # RELU
            n = op[RELU_ELEMENTS]
            for b in prange(n_b):
                for x in range(n):
                    v = src[b, x]
                    dst[b, x] = np.float32(0.0) if v < 0 else v
    return ops.shape[0] % 2


@njit(parallel=True, fastmath=FINITE_SAFE, cache=True, nogil=True, boundscheck=False)
def feature_major_run(ops, ptrs, blocks, steps, escapes, vals, biases, act_a, act_b):  # pragma: no cover - compiled
    """The ``LINEAR`` and ``RELU`` ops of a :func:`run_fused` table on activations held feature-major.

    As :func:`feature_major` layer after layer, with each layer's bias and ReLU applied in place:
    ``act_a`` and ``act_b`` are ``(>= widest layer, B)``, the input in ``act_a[:K]``, op ``i`` reading
    ``act_a`` when ``i`` is even; register tiles over the batch. Dense rows (a head's) are one
    vectorised multiply-add per weight.
    Returns which buffer holds the output (0: ``act_a``, 1: ``act_b``).
    """
    width = act_a.shape[1]
    for i in range(ops.shape[0]):
        src = act_a if i % 2 == 0 else act_b
        dst = act_b if i % 2 == 0 else act_a
        if ops[i, KIND] == RELU:
            for f in prange(ops[i, RELU_ELEMENTS]):
                for j in range(width):
                    v = src[f, j]
                    dst[f, j] = np.float32(0.0) if v < 0 else v
            continue
        relu, row_ptr, blk, st, esc, vl, bias = _linear_op(ops[i], ptrs, blocks, steps, escapes, vals, biases)
        for bi in prange(blk.shape[0] - 1):
            for r in range(blk[bi], blk[bi + 1]):
                acc = dst[r]
                add = bias[r] if bias.shape[0] > 0 else np.float32(0.0)
                lo = row_ptr[r]
                if st.shape[0] == 0:  # a dense row (a head's): columns 0, 1, ...
                    for j in range(width):
                        acc[j] = add
                    for k in range(lo, row_ptr[r + 1]):
                        v = value_at(vl, k)
                        row = src[k - lo]
                        for j in range(width):
                            acc[j] += v * row[j]
                else:
                    _packed_step_rows(r, row_ptr, st, esc, vl, src, acc, width)
                    for j in range(width):
                        acc[j] += add
                if relu:
                    for j in range(width):
                        if acc[j] < 0:
                            acc[j] = np.float32(0.0)
    return ops.shape[0] % 2
