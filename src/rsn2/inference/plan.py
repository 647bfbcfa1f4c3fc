"""A subnetwork's inference plan for one layer: built once, cached, rebuilt when weights change."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rsn2.inference import kernels
from rsn2.inference.packed import ChunkedCSR
from rsn2.inference.policy import SparsePolicy


@dataclass(frozen=True)
class ConvGeometry:
    """What a sparse convolution needs besides the kernel: ``(kh, kw)``, stride, dilation, padding."""

    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int] | str

    def pads(self) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)`` as :func:`torch.nn.functional.pad` takes them."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":  # as torch: the odd extra pixel goes right / bottom
            th = self.dilation[0] * (self.kernel_size[0] - 1)
            tw = self.dilation[1] * (self.kernel_size[1] - 1)
            return (tw // 2, tw - tw // 2, th // 2, th - th // 2)
        assert not isinstance(self.padding, str), f"unknown padding {self.padding!r}"
        ph, pw = self.padding
        return (pw, pw, ph, ph)


class LayerPlan:
    """One subnetwork's view of one layer, ready for inference.

    Makes, on first need, the masked dense kernel (for the dense path) and the packed chunked CSR of
    the subnetwork's positions (for the sparse path). ``key`` identifies the weights it was built
    from; the layer makes a new plan when the key changes (an optimizer step, a load, a selection).
    """

    def __init__(
        self, key: tuple[int, ...], weight: Tensor, mask: Tensor, bias: Tensor | None, geometry: ConvGeometry | None
    ) -> None:
        self.key = key
        self.geometry = geometry
        self._weight = weight
        self._mask = mask
        self._dense_weight: Tensor | None = None
        self._packed: ChunkedCSR | None = None
        with torch.no_grad():
            self.bias = None if bias is None else bias.detach().clone()
        self.positions = mask.numel()
        self.density = float(mask.sum()) / self.positions

    @property
    def dense_weight(self) -> Tensor:
        """The masked dense kernel (zeros off the subnetwork), made on first use."""
        if self._dense_weight is None:
            with torch.no_grad():
                owns_all = bool(self._mask.all())
                self._dense_weight = self._weight.detach() if owns_all else (self._weight * self._mask).detach()
        return self._dense_weight

    @property
    def packed(self) -> ChunkedCSR:
        """The subnetwork's positions packed for the sparse kernels, made on first use."""
        if self._packed is None:
            w, m = self._weight.detach(), self._mask
            self._packed = ChunkedCSR.from_masked(w.reshape(w.shape[0], -1), m.reshape(m.shape[0], -1))
        return self._packed

    def wants_sparse(self, x: Tensor, policy: SparsePolicy) -> bool:
        """Whether ``policy`` sends input ``x`` down the sparse path."""
        if not policy.enabled or x.device.type != "cpu" or x.dtype != torch.float32:
            return False
        if self._weight.device.type != "cpu" or self._weight.dtype != torch.float32:
            return False
        if self.positions < policy.min_positions:
            return False
        if self.geometry is not None:
            return self.density <= policy.conv_max_density and x.dim() == 4 and x.shape[0] <= policy.conv_max_batch
        return self.density <= policy.linear_max_density

    def run_sparse(self, x: Tensor, policy: SparsePolicy) -> Tensor:
        """The layer's output for ``x`` from the packed kernel (equal to the dense path within 1e-5)."""
        kernels.prepare_threads()
        if self.geometry is not None:
            return self._conv(x)
        return self._linear(x, policy)

    def _linear(self, x: Tensor, policy: SparsePolicy) -> Tensor:
        packed = self.packed
        if x.dim() == 0 or x.shape[-1] != packed.shape[1]:  # the kernels do not bounds-check
            raise ValueError(f"input's last dimension must be {packed.shape[1]}, got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        n = flat.shape[0]
        if n <= policy.rows_kernel_max_batch:
            xs = np.ascontiguousarray(flat.detach().numpy())
            out = np.empty((n, packed.shape[0]), dtype=np.float32)
            kernels.rows_gather(packed.chunk_ptr, packed.blocks, packed.cols, packed.vals, xs, out)
            y = torch.from_numpy(out)
        else:
            xt = np.ascontiguousarray(flat.detach().numpy().T)
            out_t = np.empty((packed.shape[0], n), dtype=np.float32)
            kernels.feature_major(packed.chunk_ptr, packed.blocks, packed.cols, packed.vals, xt, out_t)
            y = torch.from_numpy(out_t).t()
        if self.bias is not None:
            y = y + self.bias
        else:
            y = y.contiguous()
        return y.reshape(*lead, packed.shape[0])

    def _conv(self, x: Tensor) -> Tensor:
        packed, geo = self.packed, self.geometry
        assert geo is not None
        in_channels = self._weight.shape[1]
        if x.shape[1] != in_channels:  # the kernel does not bounds-check
            raise ValueError(f"input must have {in_channels} channels (N, C, H, W), got shape {tuple(x.shape)}")
        xp = F.pad(x, geo.pads()) if any(geo.pads()) else x
        xp_np = np.ascontiguousarray(xp.detach().numpy())
        kh, kw = geo.kernel_size
        sh, sw = geo.stride
        dh, dw = geo.dilation
        h_out = (xp_np.shape[2] - dh * (kh - 1) - 1) // sh + 1
        w_out = (xp_np.shape[3] - dw * (kw - 1) - 1) // sw + 1
        if h_out < 1 or w_out < 1:
            raise ValueError(f"input of spatial size {tuple(x.shape[2:])} is smaller than the kernel")
        out = np.empty((x.shape[0], packed.shape[0], h_out, w_out), dtype=np.float32)
        kernels.conv2d_direct(packed.chunk_ptr, packed.cols, packed.vals, xp_np, out, kh, kw, sh, sw, dh, dw)
        y = torch.from_numpy(out)
        if self.bias is not None:
            y += self.bias.view(1, -1, 1, 1)
        return y
