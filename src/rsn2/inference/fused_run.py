"""Consecutive layers of a task run in one compiled call when the batch is small."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numba.typed import List as TypedList
from torch import Tensor, nn

from rsn2.errors import SpecError
from rsn2.inference import kernels
from rsn2.inference.op_table import CONV, LINEAR, OP_FIELDS, POOL, RELU, op_row
from rsn2.inference.packed import BLOCKS, DeltaCSR, balanced_blocks
from rsn2.inference.policy import SparsePolicy
from rsn2.inference.subnetwork_kernel import ConvGeometry, SubnetworkKernel
from rsn2.inference.tiles import tile_width
from rsn2.inference.values import to_bfloat16_bits

MAX_DENSE_POSITIONS = 65536
"""A convolution share held only as a dense kernel joins a run up to this many kernel positions
(packed here from its nonzeros: a few KB); so does a linear share held dense when the run is to take
large batches feature-major. Dense linear shares join runs at any size, read in place."""


def _pool_ints(pool: nn.MaxPool2d) -> tuple[int, int] | None:
    """``(kernel, stride)`` of a square max pool without padding or dilation, else None."""

    def square(v: Any) -> int | None:
        if isinstance(v, int):
            return v
        return int(v[0]) if len(v) == 2 and v[0] == v[1] else None

    k, s = square(pool.kernel_size), square(pool.stride if pool.stride is not None else pool.kernel_size)
    if k is None or s is None or square(pool.padding) != 0 or square(pool.dilation) != 1:
        return None
    if pool.ceil_mode or pool.return_indices:
        return None
    return k, s


def _dense_cpu(module: SubnetworkKernel) -> bool:
    w = module.weight
    return module.packed is None and w is not None and w.device.type == "cpu" and w.dtype == torch.float32


def _is_kernel(module: nn.Module) -> bool:
    """Whether ``module`` is a layer with weights that a run can hold: a linear share (packed, or
    dense on the CPU in float32) or a stride-1 convolution share (packed, or small and dense)."""
    if not isinstance(module, SubnetworkKernel):
        return False
    if module.geometry is None:
        return module.packed is not None or _dense_cpu(module)
    if module.geometry.stride != (1, 1):
        return False
    return module.packed is not None or (_dense_cpu(module) and module.positions <= MAX_DENSE_POSITIONS)


def _joins(module: nn.Module) -> bool:
    if isinstance(module, nn.MaxPool2d):
        return _pool_ints(module) is not None
    if isinstance(module, nn.Flatten):
        return module.start_dim == 1 and module.end_dim == -1
    return isinstance(module, nn.ReLU) or _is_kernel(module)


@dataclass
class _Layer:
    """One layer with weights of a run, as the fused kernels read it: a :class:`DeltaCSR`, or a dense
    linear kernel read in place (``steps`` empty, every row holding all columns)."""

    shape: tuple[int, int]  # (rows, columns) of the kernel as a matrix
    row_ptr: np.ndarray
    blocks: np.ndarray
    steps: np.ndarray  # uint8 column steps; empty for a dense kernel
    escapes: np.ndarray  # int32, where each row's escaped steps start (compact steps), else empty
    vals: np.ndarray  # float32, or uint16 bfloat16 bits (as the module holds its packed values)
    bias: np.ndarray  # float32, empty for none
    geometry: ConvGeometry | None
    packed: DeltaCSR | None
    made_bytes: int  # arrays made here rather than shared with the SubnetworkKernel

    @classmethod
    def of(cls, module: SubnetworkKernel) -> _Layer:
        bias = np.zeros(0, np.float32) if module.bias is None else module.bias.numpy()  # float32, shared
        made = 0
        packed = module.packed
        if packed is None and module.geometry is not None:  # a small conv share: packed from its nonzeros
            assert module.weight is not None
            w = module.weight.reshape(module.shape[0], -1)
            packed = DeltaCSR.from_masked(w, w != 0, values=module.values)
            made += packed.nbytes
        if packed is not None:
            p = packed
            return cls(p.shape, p.row_ptr, p.blocks, p.steps, p.escapes, p.vals, bias, module.geometry, p, made)
        assert module.weight is not None
        rows, cols = module.shape[0], int(np.prod(module.shape[1:]))
        row_ptr = (np.arange(rows + 1, dtype=np.int64) * cols).astype(np.int32)
        blocks = balanced_blocks(row_ptr, min(BLOCKS, rows))
        vals = module.weight.numpy().reshape(-1)  # the kernel's own dense weight, not a copy
        if module.values == "bfloat16":  # the run's packed members hold bfloat16 bits: one value type per run
            vals = to_bfloat16_bits(vals)  # exact: the dense weight holds rounded values
        made += row_ptr.nbytes + blocks.nbytes + (vals.nbytes if vals.dtype == np.uint16 else 0)
        empty_u8, empty_i32 = np.zeros(0, np.uint8), np.zeros(0, np.int32)
        return cls((rows, cols), row_ptr, blocks, empty_u8, empty_i32, vals, bias, None, None, made)

    @property
    def density(self) -> float:
        """Share of the kernel's positions held (1 for a dense kernel read in place)."""
        return 1.0 if self.packed is None else self.packed.nnz / (self.shape[0] * self.shape[1])

    def conv_offsets(self, padded: tuple[int, int]) -> np.ndarray:
        assert self.packed is not None and self.geometry is not None
        return self.packed.conv_offsets(self.geometry.kernel_size, self.geometry.dilation, padded)


@dataclass
class _Plan:
    """The op table and typed arrays of :func:`~rsn2.inference.kernels.run_fused` for one input size."""

    ops: np.ndarray
    arrays: tuple[Any, ...]  # ptrs, blocks, steps, escapes, offsets, vals, biases (numba typed lists)
    widths: tuple[int, int, int, int]  # activation, padded input, wide output, packed linear in/out: floats per sample
    in_size: int  # values per input sample
    out_shape: tuple[int, ...]
    out_size: int
    offsets_bytes: int


class FusedRun(nn.Module):
    """Consecutive layers of a task (at least two with weights) that run together in compiled calls.

    Members: :class:`SubnetworkKernel` s of linear layers (packed, or dense on the CPU in float32,
    read in place) and of stride-1 convolutions (packed, or dense with at most
    :data:`MAX_DENSE_POSITIONS` positions, packed here from their nonzeros), ``nn.ReLU``,
    ``nn.Flatten`` and square ``nn.MaxPool2d`` without padding. :attr:`nbytes` counts what the run
    holds beyond its layers' own arrays.

    For CPU float32 input, a run holding a convolution or pool whose members are all sparse
    (:attr:`sliced`: convolutions at most the policy's ``conv_max_density``, dense linear members
    small) is one :func:`~rsn2.inference.kernels.run_fused` call per slice of at most
    ``fused_max_batch`` samples, all slices sharing one set of buffers: at batch 1 the calls
    between layers cost about as much as the kernels, and at any batch the register-tiled
    convolutions beat the dense ones (a slice of more than ``rows_kernel_max_batch`` samples runs
    its packed linear layers feature-major, one pass over each share for the whole slice). Any other run takes up
    to ``rows_kernel_max_batch`` samples in one ``run_fused`` call; beyond that, a run of linear
    layers whose dense members are small (:attr:`feature_major`: heads) is one
    :func:`~rsn2.inference.kernels.feature_major_run` call, the activations transposed once for the
    whole run rather than at every layer, and anything else runs the layers one by one. Either way
    the output equals running ``layers`` in turn within float32 rounding (1e-5).

    Shape: as its first and last layers (``(N, C, H, W)`` or ``(N, features)`` in and out).
    """

    def __init__(self, layers: list[nn.Module], policy: SparsePolicy) -> None:
        super().__init__()
        if not all(_joins(m) for m in layers) or sum(_is_kernel(m) for m in layers) < 2:
            raise SpecError(
                "a FusedRun holds at least two CPU float32 linear / stride-1 conv SubnetworkKernels, with "
                "ReLU, Flatten and square MaxPool2d between them"
            )
        if len({m.values for m in layers if isinstance(m, SubnetworkKernel)}) > 1:
            raise SpecError("a FusedRun's SubnetworkKernels must hold their values in one dtype (float32 or bfloat16)")
        self.layers = nn.Sequential(*layers)
        self._held = {i: _Layer.of(m) for i, m in enumerate(layers) if isinstance(m, SubnetworkKernel)}
        held = self._held.values()
        spatial = any(isinstance(m, nn.MaxPool2d) for m in layers) or any(h.geometry is not None for h in held)
        big_dense = any(not h.steps.size and h.vals.size > MAX_DENSE_POSITIONS for h in held)
        sparse_convs = all(h.density <= policy.conv_max_density for h in held if h.geometry is not None)
        self.sliced = spatial and not big_dense and sparse_convs
        self.feature_major = not spatial and not big_dense
        self.rows_max = policy.rows_kernel_max_batch  # a slice beyond runs its packed linear layers feature-major
        self.max_batch = policy.fused_max_batch if self.sliced else self.rows_max
        self._plans: dict[tuple[int, ...], _Plan] = {}  # by input shape (without batch), made on first use

    @classmethod
    def grouped(cls, steps: list[nn.Module], policy: SparsePolicy) -> list[nn.Module]:
        """``steps`` with every run of fusable steps holding two or more layers with weights in one FusedRun."""
        if not (policy.enabled and policy.fuse):
            return list(steps)
        out: list[nn.Module] = []
        run: list[nn.Module] = []

        def close() -> None:
            while run and not _is_kernel(run[0]) and not isinstance(run[0], nn.Flatten):
                out.append(run.pop(0))  # a run starts at a layer with weights (or a flatten before one)
            if sum(_is_kernel(m) for m in run) >= 2:
                out.append(cls(run[:], policy))
            else:
                out.extend(run)
            run.clear()

        for step in steps:
            if _joins(step):
                run.append(step)
            else:
                close()
                out.append(step)
        close()
        return out

    @property
    def nbytes(self) -> int:
        """Bytes this run holds beyond its layers: conv shares it packed itself, row pointers of the dense
        shares it reads in place, and the conv tap offsets of its plans."""
        made = sum(layer.made_bytes for layer in self._held.values())
        return made + sum(plan.offsets_bytes for plan in self._plans.values())

    def __getstate__(self) -> dict[str, Any]:  # copies and pickles rebuild the compiled plans
        state = dict(super().__getstate__())
        state["_plans"] = {}
        state["_held"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:  # read the copied layers' own arrays, not copies of them
        super().__setstate__(state)
        self._held = {i: _Layer.of(m) for i, m in enumerate(self.layers) if isinstance(m, SubnetworkKernel)}

    def _plan(self, shape: tuple[int, ...]) -> _Plan:
        """The op table for samples of ``shape``; SpecError where a layer does not take that shape."""
        input_shape = shape
        ops: list[np.ndarray] = []
        ptrs, blocks, steps, escapes, offsets, vals, biases = (TypedList() for _ in range(7))
        empty_u8, empty_u32 = np.zeros(0, np.uint8), np.zeros(0, np.uint32)
        widths = [int(np.prod(shape)), 0, 0, 0]
        offsets_bytes = 0
        layers = list(self.layers)
        for i, module in enumerate(layers):
            relu = i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU)
            if isinstance(module, nn.ReLU):
                if i > 0 and i - 1 in self._held:
                    continue  # folded into the layer before
                ops.append(op_row(RELU, elements=int(np.prod(shape))))
            elif isinstance(module, nn.Flatten):
                if len(shape) < 1:
                    raise SpecError(f"Flatten needs (N, ...) input, got samples of shape {shape}")
                shape = (int(np.prod(shape)),)
                continue
            elif isinstance(module, nn.MaxPool2d):
                pool = _pool_ints(module)
                assert pool is not None
                k, s = pool
                if len(shape) != 3 or shape[1] < k or shape[2] < k:
                    raise SpecError(f"max pool {k}x{k} needs (N, C, H, W) input of at least {k}x{k}, got {shape}")
                c, h, w = shape
                shape = (c, (h - k) // s + 1, (w - k) // s + 1)
                ops.append(
                    op_row(
                        POOL, channels=c, height=h, width=w, kernel=k, stride=s, out_height=shape[1], out_width=shape[2]
                    )
                )
            else:
                layer = self._held[i]
                index = len(ptrs)
                ptrs.append(layer.row_ptr)
                blocks.append(layer.blocks)
                escapes.append(layer.escapes)
                vals.append(layer.vals)
                biases.append(layer.bias)
                n_out, n_in = layer.shape
                if layer.geometry is None:
                    if len(shape) != 1 or shape[0] != n_in:
                        raise SpecError(f"a linear layer of {n_in} inputs got samples of shape {shape}")
                    steps.append(layer.steps)
                    offsets.append(empty_u32)
                    if layer.steps.size:  # packed: runs feature-major on slices of more than rows_max samples
                        widths[3] = max(widths[3], n_in, n_out)
                    ops.append(
                        op_row(
                            LINEAR,
                            index,
                            inputs=n_in,
                            outputs=n_out,
                            relu=int(relu),
                            feature_major_from=self.rows_max + 1,
                        )
                    )
                    shape = (n_out,)
                else:
                    g = layer.geometry
                    taps = g.kernel_size[0] * g.kernel_size[1]
                    if len(shape) != 3 or shape[0] * taps != n_in:
                        raise SpecError(f"a convolution of {n_in // taps} input channels got samples of shape {shape}")
                    c, h, w = shape
                    h_p, w_p, h_out, w_out = g.sizes(h, w)  # stride 1: members are stride-1 convolutions
                    left, _, top, _ = g.pads()
                    offs = layer.conv_offsets((h_p, w_p))
                    offsets_bytes += offs.nbytes
                    steps.append(empty_u8)
                    offsets.append(offs)
                    span = (h_out - 1) * w_p + w_out
                    ops.append(
                        op_row(
                            CONV,
                            index,
                            channels=c,
                            height=h,
                            width=w,
                            pad_top=top,
                            pad_left=left,
                            padded_height=h_p,
                            padded_width=w_p,
                            filters=n_out,
                            out_height=h_out,
                            out_width=w_out,
                            span=span,
                            relu=int(relu),
                        )
                    )
                    if (h_p, w_p) != (h, w):
                        widths[1] = max(widths[1], c * h_p * w_p)
                    widths[2] = max(widths[2], n_out * h_out * w_p)
                    shape = (n_out, h_out, w_out)
            widths[0] = max(widths[0], int(np.prod(shape)))
        table = np.stack(ops) if ops else np.zeros((0, OP_FIELDS), dtype=np.int64)
        arrays = (ptrs, blocks, steps, escapes, offsets, vals, biases)
        in_size, out_size = int(np.prod(input_shape)), int(np.prod(shape))
        return _Plan(
            table, arrays, (widths[0], widths[1], widths[2], widths[3]), in_size, shape, out_size, offsets_bytes
        )

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        few = n <= self.max_batch
        if x.device.type != "cpu" or x.dtype != torch.float32 or n < 1:
            return self.layers(x)
        if not (few or self.sliced or self.feature_major):
            return self.layers(x)
        key = x.shape[1:]  # a torch.Size: a tuple
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(tuple(key))
        kernels.prepare_threads()
        if few or self.sliced:
            return self._fused(x, plan)
        return self._feature_major(x, plan)

    def _fused(self, x: Tensor, plan: _Plan) -> Tensor:
        """The whole run as :func:`~rsn2.inference.kernels.run_fused` calls on slices of at most
        :attr:`max_batch` samples (one call for a few samples), samples as rows, reusing one set of
        buffers across the slices."""
        n = x.shape[0]
        rows = min(n, self.max_batch)
        act, padded, wide, linear = plan.widths
        act_a = np.empty((rows, act), dtype=np.float32)
        act_b = np.empty((rows, act), dtype=np.float32)
        pad = np.empty((rows, padded), dtype=np.float32)
        wide_out = np.empty((rows, wide), dtype=np.float32)
        linear_floats = tile_width(rows) * linear if rows > self.rows_max else 0  # feature-major linear ops
        lin_in = np.empty(linear_floats, dtype=np.float32)
        lin_out = np.empty(linear_floats, dtype=np.float32)
        flat = x.detach().reshape(n, plan.in_size).numpy()
        out = np.empty((n, plan.out_size), dtype=np.float32)
        ptrs, blocks, steps, escapes, offsets, vals, biases = plan.arrays
        for start in range(0, n, rows):
            k = min(rows, n - start)
            a, b = act_a[:k], act_b[:k]
            a[:, : plan.in_size] = flat[start : start + k]
            which = kernels.run_fused(
                plan.ops,
                ptrs,
                blocks,
                steps,
                escapes,
                offsets,
                vals,
                biases,
                a,
                b,
                pad[:k],
                wide_out[:k],
                lin_in,
                lin_out,
            )
            out[start : start + k] = (b if which else a)[:, : plan.out_size]
        return torch.from_numpy(out.reshape((n, *plan.out_shape)))

    def _feature_major(self, x: Tensor, plan: _Plan) -> Tensor:
        """A linear run on many samples: activations transposed once, ``(features, N)``, through every layer."""
        n = x.shape[0]
        act_a = kernels.feature_major_input(x.detach().reshape(n, plan.in_size).numpy(), plan.widths[0])
        act_b = np.empty_like(act_a)
        ptrs, blocks, steps, escapes, _, vals, biases = plan.arrays
        which = kernels.feature_major_run(plan.ops, ptrs, blocks, steps, escapes, vals, biases, act_a, act_b)
        out = (act_b if which else act_a)[: plan.out_size, :n]
        return torch.from_numpy(np.ascontiguousarray(out.T).reshape((n, *plan.out_shape)))
