"""Compiled sparse kernels (Numba) for one subnetwork's share of a layer.

The packed format (see :mod:`rsn2.inference.packed`) is a delta-coded CSR: row ``r`` owns entries
``row_ptr[r]:row_ptr[r + 1]``, each a float32 value and a uint8 column step; an entry's column is the
running sum of its row's steps. Bridge entries (value 0) span gaps wider than 255 columns.

Choices, measured on a 2-core AMD EPYC (AVX-512) for a 1000 x 1000 layer at 10% kept (see
``docs/performance.md``): for a few samples, a row-parallel gather with four independent scalar
accumulators beat both Numba's auto-vectorised AVX-512 gathers and SciPy's CSR product, and indexing
with unsigned integers (no negative-index checks) made it faster still; for many samples, a
feature-major product (activations as ``(features, batch)``, vectorised over the batch) beat
everything else. Convolutions run directly on the padded input (no im2col copy), vectorised over
output columns.
"""

from __future__ import annotations

import os

import numba
import numpy as np
import torch
from numba import njit, prange

_threads_ready = False


def prepare_threads() -> None:
    """Match Numba's thread count to PyTorch's; start Numba's pool with passive waiting.

    Numba's OpenMP pool is separate from PyTorch's. Left to spin after each kernel, its threads
    steal the cores PyTorch's own kernels run on next (measured: the dense control ran about 15%
    slower right after sparse calls). The pool reads ``OMP_WAIT_POLICY`` once, when it starts, so it
    is set for that moment only, and a value the user set is kept.
    """
    global _threads_ready
    if not _threads_ready:
        previous = os.environ.get("OMP_WAIT_POLICY")
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            _warm(np.zeros(2, dtype=np.float32))
        finally:
            if previous is None:
                del os.environ["OMP_WAIT_POLICY"]
        _threads_ready = True
    wanted = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    if numba.get_num_threads() != wanted:
        numba.set_num_threads(wanted)


@njit(parallel=True, cache=True)
def _warm(a):  # pragma: no cover - compiled
    for i in prange(a.shape[0]):
        a[i] = i


@njit(cache=True, nogil=True, inline="always", boundscheck=False)
def _row_sum(lo, hi, steps, vals, xb):  # pragma: no cover - compiled
    """``sum_k vals[k] * xb[col_k]`` over entries ``lo:hi`` of one row, ``col_k`` the running sum of
    ``steps``: groups of 16 unrolled into four independent accumulation chains, then the rest
    into the first. Unsigned indices, so Numba adds no negative-index wraparound checks."""
    a0 = np.float32(0.0)
    a1 = np.float32(0.0)
    a2 = np.float32(0.0)
    a3 = np.float32(0.0)
    rv = vals[lo:hi]
    rs = steps[lo:hi]
    col = np.uint64(0)
    groups = (hi - lo) // 16
    for g in range(groups):
        j = np.uint64(16 * g)
        col += rs[j + 0]
        a0 += rv[j + 0] * xb[col]
        col += rs[j + 1]
        a1 += rv[j + 1] * xb[col]
        col += rs[j + 2]
        a2 += rv[j + 2] * xb[col]
        col += rs[j + 3]
        a3 += rv[j + 3] * xb[col]
        col += rs[j + 4]
        a0 += rv[j + 4] * xb[col]
        col += rs[j + 5]
        a1 += rv[j + 5] * xb[col]
        col += rs[j + 6]
        a2 += rv[j + 6] * xb[col]
        col += rs[j + 7]
        a3 += rv[j + 7] * xb[col]
        col += rs[j + 8]
        a0 += rv[j + 8] * xb[col]
        col += rs[j + 9]
        a1 += rv[j + 9] * xb[col]
        col += rs[j + 10]
        a2 += rv[j + 10] * xb[col]
        col += rs[j + 11]
        a3 += rv[j + 11] * xb[col]
        col += rs[j + 12]
        a0 += rv[j + 12] * xb[col]
        col += rs[j + 13]
        a1 += rv[j + 13] * xb[col]
        col += rs[j + 14]
        a2 += rv[j + 14] * xb[col]
        col += rs[j + 15]
        a3 += rv[j + 15] * xb[col]
    for j in range(16 * groups, hi - lo):
        col += rs[j]
        a0 += rv[j] * xb[col]
    return (a0 + a1) + (a2 + a3)


@njit(parallel=True, cache=True, nogil=True)
def rows_gather(row_ptr, blocks, steps, vals, x, out):  # pragma: no cover - compiled
    """``out[b, r] = sum_k vals[k] * x[b, col_k]`` over row ``r``'s entries, for a few samples.

    Shapes: ``row_ptr (R + 1,)``; ``blocks (n_blocks + 1,)``, row boundaries of blocks holding
    about equal numbers of entries (the parallel unit); ``steps``/``vals (entries,)``;
    ``x (B, K)``; ``out (B, R)``. Four independent accumulators, no SIMD gathers (slower here).
    """
    for blk in prange(blocks.shape[0] - 1):
        for r in range(blocks[blk], blocks[blk + 1]):
            lo = row_ptr[r]
            hi = row_ptr[r + 1]
            for b in range(x.shape[0]):
                out[b, r] = _row_sum(lo, hi, steps, vals, x[b])


@njit(parallel=True, fastmath=True, cache=True, nogil=True, boundscheck=False)
def feature_major(row_ptr, blocks, steps, vals, xt, out_t):  # pragma: no cover - compiled
    """``out_t[r, :] = sum_k vals[k] * xt[col_k, :]`` over row ``r``'s entries, for many samples.

    Shapes: ``xt (K, B)`` and ``out_t (R, B)``, both C-contiguous; vectorised over ``B``;
    ``row_ptr``, ``blocks``, ``steps``, ``vals`` as for :func:`rows_gather`.
    """
    width = xt.shape[1]
    for blk in prange(blocks.shape[0] - 1):
        for r in range(blocks[blk], blocks[blk + 1]):
            acc = out_t[r]
            acc[:] = 0.0
            col = np.uint64(0)
            for k in range(row_ptr[r], row_ptr[r + 1]):
                col += steps[k]
                v = vals[k]
                src = xt[col]
                for j in range(width):
                    acc[j] += v * src[j]


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
            v = vals[k]
            if v != 0.0:  # skips bridge entries
                ci, i, j = _tap(col, kh, kw)
                src = xp[b, ci]
                for y in range(h_out):
                    row = src[y * sh + i * dh]
                    d = dst[y]
                    off = j * dw
                    for x in range(w_out):
                        d[x] += v * row[x * sw + off]


@njit(parallel=True, cache=True, nogil=True)
def rows_chain(ptrs, blocks, steps, vals, biases, relus, buf_a, buf_b):  # pragma: no cover - compiled
    """Consecutive packed linear layers, each followed by ReLU where ``relus[i]``, for a few samples.

    One call in place of one :func:`rows_gather` call per layer: what a batch of a few samples spends
    is then the kernels' own time, not the calls between them. ``ptrs``, ``blocks``, ``steps``,
    ``vals`` hold each layer's packed arrays (as for :func:`rows_gather`), ``biases`` its bias
    (an empty array for none). The input is in ``buf_a[:, :K]``; layers write ``buf_b``, ``buf_a``,
    ``buf_b``... in turn (both ``(B, W)``, ``W`` at least every layer's width). Returns which buffer
    holds the last layer's output (0: ``buf_a``, 1: ``buf_b``). Each output equals
    :func:`rows_gather`'s, plus the bias, then ReLU: the same sums in the same order.
    """
    for li in range(len(ptrs)):
        src = buf_a if li % 2 == 0 else buf_b
        dst = buf_b if li % 2 == 0 else buf_a
        row_ptr = ptrs[li]
        blk = blocks[li]
        s_ = steps[li]
        v_ = vals[li]
        bias = biases[li]
        relu = relus[li]
        for bi in prange(blk.shape[0] - 1):
            for r in range(blk[bi], blk[bi + 1]):
                lo = row_ptr[r]
                hi = row_ptr[r + 1]
                for b in range(src.shape[0]):
                    y = _row_sum(lo, hi, s_, v_, src[b])
                    if bias.shape[0] > 0:
                        y = y + bias[r]
                    if relu and y < 0:
                        y = np.float32(0.0)
                    dst[b, r] = y
    return len(ptrs) % 2


@njit(parallel=True, fastmath=True, cache=True, nogil=True, boundscheck=False)
def conv2d_wide(row_ptr, steps, vals, xp, out, kh, kw, dh, dw):  # pragma: no cover - compiled
    """Sparse 2-D convolution with stride 1 on an already padded input, on the input's full width.

    Output row ``y`` is computed over all ``W_p`` columns of the padded input, so that each kept
    weight is one contiguous multiply-add over the plane: ``out[b, o, y * W_p + x] = sum_k vals[k] *
    xp[b, ci, (y + i * dh) * W_p + x + j * dw]`` (the entry's column encoding ``(ci, i, j)`` as for
    :func:`conv2d_direct`). Columns ``x >= W_out`` of each row hold no output (the caller crops them).
    Shapes: ``xp (B, C_in, H_p, W_p)`` C-contiguous, ``out (B, C_out, H_out * W_p)``.
    """
    n_b, n_c, h_p, w_p = xp.shape
    n_o = out.shape[1]
    h_out = out.shape[2] // w_p
    span = np.uint64((h_out - 1) * w_p + w_p - (kw - 1) * dw)  # through the last output row's last column
    planes = xp.reshape(n_b, n_c, h_p * w_p)
    for job in prange(n_b * n_o):
        b = job // n_o
        o = job % n_o
        dst = out[b, o]
        dst[:] = 0.0
        col = 0
        for k in range(row_ptr[o], row_ptr[o + 1]):
            col += steps[k]
            v = vals[k]
            ci, i, j = _tap(col, kh, kw)
            src = planes[b, ci]
            start = np.uint64(i * dh * w_p + j * dw)
            for x in range(span):
                dst[x] += v * src[start + x]
