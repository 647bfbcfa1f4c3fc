"""Compiled sparse kernels (Numba) for one subnetwork's share of a layer.

The packed format (see :mod:`rsn2.inference.packed`) is a chunked CSR: the nonzeros of each output
row are stored in chunks of ``CHUNK`` (value, column) pairs, the last chunk of a row padded with
value 0 at column 0. Row ``r`` owns chunks ``chunk_ptr[r]:chunk_ptr[r + 1]``.

Choices, measured on a 2-core AMD EPYC (AVX-512) for a 1000 x 1000 layer at 10% kept (see
``docs/performance.md``): for a few samples, a row-parallel gather with four independent scalar
accumulators beat both Numba's auto-vectorised AVX-512 gathers and SciPy's CSR product; for many
samples, a feature-major product (activations as ``(features, batch)``, vectorised over the batch)
beat everything else. Convolutions run directly on the padded input (no im2col copy), vectorised
over output columns.
"""

from __future__ import annotations

import os

import numba
import numpy as np
import torch
from numba import njit, prange

CHUNK = 16
"""Nonzeros per chunk; a chunk is fully unrolled into four accumulation chains."""


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


@njit(cache=True, nogil=True, inline="always")
def _row_sum(lo, hi, cols, vals, xb):  # pragma: no cover - compiled
    """``sum_k vals[c, k] * xb[cols[c, k]]`` over chunks ``lo:hi``: four independent accumulation
    chains (a chunk's 16 entries fully unrolled), no SIMD gathers (slower here)."""
    a0 = np.float32(0.0)
    a1 = np.float32(0.0)
    a2 = np.float32(0.0)
    a3 = np.float32(0.0)
    for c in range(lo, hi):
        a0 += vals[c, 0] * xb[cols[c, 0]]
        a1 += vals[c, 1] * xb[cols[c, 1]]
        a2 += vals[c, 2] * xb[cols[c, 2]]
        a3 += vals[c, 3] * xb[cols[c, 3]]
        a0 += vals[c, 4] * xb[cols[c, 4]]
        a1 += vals[c, 5] * xb[cols[c, 5]]
        a2 += vals[c, 6] * xb[cols[c, 6]]
        a3 += vals[c, 7] * xb[cols[c, 7]]
        a0 += vals[c, 8] * xb[cols[c, 8]]
        a1 += vals[c, 9] * xb[cols[c, 9]]
        a2 += vals[c, 10] * xb[cols[c, 10]]
        a3 += vals[c, 11] * xb[cols[c, 11]]
        a0 += vals[c, 12] * xb[cols[c, 12]]
        a1 += vals[c, 13] * xb[cols[c, 13]]
        a2 += vals[c, 14] * xb[cols[c, 14]]
        a3 += vals[c, 15] * xb[cols[c, 15]]
    return (a0 + a1) + (a2 + a3)


@njit(parallel=True, cache=True, nogil=True)
def rows_gather(chunk_ptr, blocks, cols, vals, x, out):  # pragma: no cover - compiled
    """``out[b, r] = sum_k vals[r, k] * x[b, cols[r, k]]`` for a few samples.

    Shapes: ``chunk_ptr (R + 1,)``; ``blocks (n_blocks + 1,)``, row boundaries of blocks holding
    about equal numbers of chunks (the parallel unit); ``cols``/``vals (n_chunks, CHUNK)``;
    ``x (B, K)``; ``out (B, R)``. Four independent accumulators, no SIMD gathers (slower here).
    """
    for blk in prange(blocks.shape[0] - 1):
        for r in range(blocks[blk], blocks[blk + 1]):
            lo = chunk_ptr[r]
            hi = chunk_ptr[r + 1]
            for b in range(x.shape[0]):
                xb = x[b]
                out[b, r] = _row_sum(lo, hi, cols, vals, xb)


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def feature_major(chunk_ptr, blocks, cols, vals, xt, out_t):  # pragma: no cover - compiled
    """``out_t[r, :] = sum_k vals[r, k] * xt[cols[r, k], :]`` for many samples.

    Shapes: ``xt (K, B)`` and ``out_t (R, B)``, both C-contiguous; vectorised over ``B``;
    ``chunk_ptr``, ``blocks``, ``cols``, ``vals`` as for :func:`rows_gather`.
    """
    width = xt.shape[1]
    for blk in prange(blocks.shape[0] - 1):
        for r in range(blocks[blk], blocks[blk + 1]):
            acc = out_t[r]
            acc[:] = 0.0
            for c in range(chunk_ptr[r], chunk_ptr[r + 1]):
                for k in range(vals.shape[1]):
                    v = vals[c, k]
                    if v != 0.0:
                        src = xt[cols[c, k]]
                        for j in range(width):
                            acc[j] += v * src[j]


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def conv2d_direct(chunk_ptr, cols, vals, xp, out, kh, kw, sh, sw, dh, dw):  # pragma: no cover - compiled
    """Sparse 2-D convolution on an already padded input.

    ``out[b, o, y, x] = sum_k vals[o, k] * xp[b, ci, y * sh + i * dh, x * sw + j * dw]`` where the
    column ``cols[o, k]`` encodes ``(ci, i, j)`` as ``(ci * kh + i) * kw + j``.
    Shapes: ``xp (B, C_in, H_p, W_p)``, ``out (B, C_out, H_out, W_out)``.
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
        for c in range(chunk_ptr[o], chunk_ptr[o + 1]):
            for k in range(vals.shape[1]):
                v = vals[c, k]
                if v != 0.0:
                    col = cols[c, k]
                    j = col % kw
                    i = (col // kw) % kh
                    ci = col // (kw * kh)
                    src = xp[b, ci]
                    for y in range(h_out):
                        row = src[y * sh + i * dh]
                        d = dst[y]
                        off = j * dw
                        for x in range(w_out):
                            d[x] += v * row[x * sw + off]


@njit(parallel=True, cache=True, nogil=True)
def rows_chain(ptrs, blocks, cols, vals, biases, relus, buf_a, buf_b):  # pragma: no cover - compiled
    """Consecutive packed linear layers, each followed by ReLU where ``relus[i]``, for a few samples.

    One call in place of one :func:`rows_gather` call per layer: what a batch of a few samples spends
    is then the kernels' own time, not the calls between them. ``ptrs``, ``blocks``, ``cols``,
    ``vals`` hold each layer's packed arrays (as for :func:`rows_gather`), ``biases`` its bias
    (an empty array for none). The input is in ``buf_a[:, :K]``; layers write ``buf_b``, ``buf_a``,
    ``buf_b``... in turn (both ``(B, W)``, ``W`` at least every layer's width). Returns which buffer
    holds the last layer's output (0: ``buf_a``, 1: ``buf_b``). Each output equals
    :func:`rows_gather`'s, plus the bias, then ReLU: the same sums in the same order.
    """
    for li in range(len(ptrs)):
        src = buf_a if li % 2 == 0 else buf_b
        dst = buf_b if li % 2 == 0 else buf_a
        chunk_ptr = ptrs[li]
        blk = blocks[li]
        c_ = cols[li]
        v_ = vals[li]
        bias = biases[li]
        relu = relus[li]
        for bi in prange(blk.shape[0] - 1):
            for r in range(blk[bi], blk[bi + 1]):
                lo = chunk_ptr[r]
                hi = chunk_ptr[r + 1]
                for b in range(src.shape[0]):
                    y = _row_sum(lo, hi, c_, v_, src[b])
                    if bias.shape[0] > 0:
                        y = y + bias[r]
                    if relu and y < 0:
                        y = np.float32(0.0)
                    dst[b, r] = y
    return len(ptrs) % 2
