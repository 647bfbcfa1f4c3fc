"""Consecutive packed linear layers of a task run in one compiled call when the batch is small."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numba.typed import List as TypedList
from torch import Tensor, nn

from rsn2.errors import SpecError
from rsn2.inference import kernels
from rsn2.inference.subnetwork_kernel import SubnetworkKernel


def _chain_member(module: nn.Module) -> bool:
    return isinstance(module, SubnetworkKernel) and module.geometry is None and module.packed is not None


class SparseChain(nn.Module):
    """Packed linear :class:`SubnetworkKernel` s in a row, each optionally followed by ``nn.ReLU``.

    For a few samples (up to the first kernel's ``policy.rows_kernel_max_batch``, CPU float32,
    ``(N, in_features)``) the whole chain runs as one :func:`~rsn2.inference.kernels.rows_chain`
    call: at batch 1 the calls between the layers cost about as much as the kernels themselves.
    Any other input runs the layers one by one. Either way the output equals running ``layers`` in
    turn: the same sums in the same order.

    Shape: ``(N, in_features) -> (N, out_features)`` of the first and last kernel.
    """

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        if not all(_chain_member(m) or isinstance(m, nn.ReLU) for m in layers):
            raise SpecError("a SparseChain holds only packed linear SubnetworkKernels and the ReLUs between them")
        self.layers = nn.Sequential(*layers)
        self._kernels = [m for m in layers if isinstance(m, SubnetworkKernel)]
        self._plan: tuple[Any, ...] | None = None  # numba typed lists, made on the first fused call

    @classmethod
    def grouped(cls, steps: list[nn.Module]) -> list[nn.Module]:
        """``steps`` with every run of two or more chainable kernels (and their ReLUs) in one chain.

        A kernel joins a run when it is linear and holds the packed form."""
        out: list[nn.Module] = []
        run: list[nn.Module] = []

        def close() -> None:
            if sum(isinstance(m, SubnetworkKernel) for m in run) >= 2:
                out.append(cls(run[:]))
            else:
                out.extend(run)
            run.clear()

        for step in steps:
            if _chain_member(step):
                run.append(step)
            elif isinstance(step, nn.ReLU) and run and isinstance(run[-1], SubnetworkKernel):
                run.append(step)
            else:
                close()
                out.append(step)
        close()
        return out

    def __getstate__(self) -> dict[str, Any]:  # copies and pickles rebuild the compiled plan
        state = dict(super().__getstate__())
        state["_plan"] = None
        return state

    def _make_plan(self) -> tuple[Any, ...]:
        ptrs, blocks, steps, vals, biases = TypedList(), TypedList(), TypedList(), TypedList(), TypedList()
        relus = []
        layers = list(self.layers)
        for i, k in enumerate(layers):
            if not isinstance(k, SubnetworkKernel):
                continue
            p = k.packed
            assert p is not None
            ptrs.append(p.row_ptr)
            blocks.append(p.blocks)
            steps.append(p.steps)
            vals.append(p.vals)
            bias = k.bias.detach().numpy() if k.bias is not None else np.zeros(0, dtype=np.float32)
            biases.append(np.ascontiguousarray(bias, dtype=np.float32))
            relus.append(i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU))
        width = max([self._kernels[0].shape[1]] + [k.shape[0] for k in self._kernels])
        return ptrs, blocks, steps, vals, biases, np.array(relus, dtype=np.bool_), width

    def forward(self, x: Tensor) -> Tensor:
        first, last = self._kernels[0], self._kernels[-1]
        fused = (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and x.dim() == 2
            and x.shape[0] <= first.policy.rows_kernel_max_batch
            and x.shape[1] == first.shape[1]
        )
        if not fused:
            return self.layers(x)
        if self._plan is None:
            self._plan = self._make_plan()
        ptrs, blocks, steps, vals, biases, relus, width = self._plan
        kernels.prepare_threads()
        buf_a = np.empty((x.shape[0], width), dtype=np.float32)
        buf_b = np.empty_like(buf_a)
        buf_a[:, : x.shape[1]] = x.detach().numpy()
        which = kernels.rows_chain(ptrs, blocks, steps, vals, biases, relus, buf_a, buf_b)
        out = (buf_b if which else buf_a)[:, : last.shape[0]]
        return torch.from_numpy(np.ascontiguousarray(out))
