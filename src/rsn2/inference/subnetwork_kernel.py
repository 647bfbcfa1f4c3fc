"""One subnetwork's share of one multitask layer, standalone and ready for inference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsn2.errors import SpecError
from rsn2.inference import kernels
from rsn2.inference.packed import DeltaCSR
from rsn2.inference.policy import SparsePolicy
from rsn2.inference.values import rounded
from rsn2.layers import MultitaskConv2d, MultitaskKernelLayer, select_owned

MAX_PACKED_DENSITY = 0.5
"""Above this share of its layer, a subnetwork's packed form (5 bytes per weight) is hardly smaller
than the dense kernel (4 bytes per position) and runs slower than it, so it is never held packed-only."""


@dataclass(frozen=True)
class ConvGeometry:
    """What a convolution needs besides the kernel: ``(kh, kw)``, stride, dilation, padding."""

    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int] | str

    @classmethod
    def of(cls, layer: MultitaskConv2d) -> ConvGeometry:
        return cls(layer.kernel_size, layer.stride, layer.dilation, layer.padding)

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

    def sizes(self, h: int, w: int) -> tuple[int, int, int, int]:
        """``(H_p, W_p, H_out, W_out)``: the padded input's and the output's size for an ``h x w`` input.

        Raises:
            SpecError: the padded input is smaller than the (dilated) kernel.
        """
        left, right, top, bottom = self.pads()
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        h_p, w_p = h + top + bottom, w + left + right
        h_out, w_out = (h_p - dh * (kh - 1) - 1) // sh + 1, (w_p - dw * (kw - 1) - 1) // sw + 1
        if h_out < 1 or w_out < 1:
            raise SpecError(f"input of spatial size {(h, w)} is smaller than the kernel")
        return h_p, w_p, h_out, w_out


class SubnetworkKernel(nn.Module):
    """A copy of one subnetwork's weights in one layer, computing what the layer computes for it.

    Holds only that subnetwork's share, in the forms its :class:`SparsePolicy` can use: the packed
    delta-coded CSR of its positions (the sparse kernels) and/or the masked dense kernel (zeros
    elsewhere, for PyTorch's dense operator). Subnetworks the policy sends sparse keep only the
    packed form; convolutions keep both when the policy caps the batch size they run sparse at
    (``conv_max_batch``). A snapshot: training the network afterwards does not change it.

    With ``dense_copy=False`` (a byte budget, see :func:`~rsn2.inference.task_models`) a share the
    packed form can hold (CPU, float32, at most :data:`MAX_PACKED_DENSITY` of the layer) keeps no
    dense kernel and runs the sparse kernels at every batch size (:attr:`packed_only`).

    With the policy's ``values="bfloat16"`` (float32 weights) every form holds the share's values
    rounded to bfloat16: the packed form in 2 bytes each, a dense kernel as float32 numbers.

    Shape: as the layer (linear ``(*, in) -> (*, out)``, convolution ``(N, C, H, W) -> (N, C', H', W')``).
    Outputs equal the layer's masked path within 1e-5 (fp32; with bfloat16 values, the masked path
    of the rounded weights). Inference only: no gradient flows.
    """

    weight: Tensor | None
    bias: Tensor | None

    def __init__(
        self,
        weight: Tensor,
        mask: Tensor,
        bias: Tensor | None,
        geometry: ConvGeometry | None,
        policy: SparsePolicy,
        *,
        dense_copy: bool = True,
    ) -> None:
        super().__init__()
        self.geometry = geometry
        self.policy = policy
        self.shape = tuple(weight.shape)
        self.positions = mask.numel()
        self.density = float(mask.sum()) / self.positions
        w = weight.detach()
        cpu_float32 = policy.enabled and w.device.type == "cpu" and w.dtype == torch.float32
        self.can_pack = cpu_float32 and self.density <= MAX_PACKED_DENSITY
        by_policy = (
            cpu_float32
            and self.positions >= policy.min_positions
            and (
                self.density <= policy.linear_max_density
                if geometry is None
                else self.density <= policy.conv_max_density and policy.conv_max_batch != 0
            )
        )
        self.packed_only = self.can_pack and not dense_copy
        self.values = policy.values if w.dtype == torch.float32 else "float32"  # every form holds them rounded
        can_sparse = by_policy or self.packed_only
        self.packed: DeltaCSR | None = None
        self._offsets: dict[tuple[int, int], np.ndarray] = {}
        if can_sparse:
            compact = policy.compact_steps and geometry is None  # the convolution kernels read byte steps
            self.packed = DeltaCSR.from_masked(
                w.reshape(w.shape[0], -1), mask.reshape(mask.shape[0], -1), compact=compact, values=self.values
            )
        some_batches_dense = geometry is not None and policy.conv_max_batch is not None
        keep_dense = (not can_sparse or some_batches_dense) and not self.packed_only
        with torch.no_grad():
            dense = rounded(select_owned(w, mask, mask.to(w.dtype)), self.values).clone() if keep_dense else None
            self.register_buffer("weight", dense)
            self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_layer(
        cls, layer: MultitaskKernelLayer, subnetwork: str, policy: SparsePolicy, *, dense_copy: bool = True
    ) -> SubnetworkKernel:
        """The share of ``layer`` that ``subnetwork`` owns and reads, with its bias. ``dense_copy=False``: hold
        only the packed form wherever it can stand in (see :attr:`packed_only`)."""
        geometry = ConvGeometry.of(layer) if isinstance(layer, MultitaskConv2d) else None
        bias = layer.biases[subnetwork] if layer.has_bias else None
        mask = layer.reading_mask(subnetwork)  # its own positions and those it reads; a snapshot, not kept
        return cls(layer.kernel(), mask, bias, geometry, policy, dense_copy=dense_copy)

    @property
    def nbytes(self) -> int:
        """Bytes of weights held (packed arrays and the tap offsets made from them, dense kernel and bias)."""
        held = [t for t in (self.weight, self.bias) if t is not None]
        packed = (self.packed.nbytes if self.packed else 0) + sum(o.nbytes for o in self._offsets.values())
        return sum(t.numel() * t.element_size() for t in held) + packed

    @property
    def dense_bytes(self) -> int:
        """Bytes of the masked dense kernel held (0 when only the packed form is)."""
        return 0 if self.weight is None else self.weight.numel() * self.weight.element_size()

    def wants_sparse(self, x: Tensor) -> bool:
        """Whether input ``x`` runs on the packed kernels: every CPU float32 input when the kernel is
        :attr:`packed_only`, else as the policy says."""
        if self.packed is None or x.device.type != "cpu" or x.dtype != torch.float32:
            return False
        if self.geometry is not None:
            limit = self.policy.conv_max_batch
            return x.dim() == 4 and (self.packed_only or limit is None or x.shape[0] <= limit)
        return True

    def forward(self, x: Tensor) -> Tensor:
        if self.wants_sparse(x):
            kernels.prepare_threads()
            return self._conv_sparse(x) if self.geometry is not None else self._linear_sparse(x)
        weight = self._dense_weight().to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if self.geometry is None:
            return F.linear(x, weight, bias)
        g = self.geometry
        return F.conv2d(x, weight, bias, g.stride, g.padding, g.dilation)

    def _dense_weight(self) -> Tensor:
        if self.weight is None:  # a sparse-only kernel given an input the sparse kernels do not take
            assert self.packed is not None
            self.weight = self.packed.to_dense().reshape(self.shape)
        return self.weight

    def _linear_sparse(self, x: Tensor) -> Tensor:
        packed = self.packed
        assert packed is not None
        if x.dim() == 0 or x.shape[-1] != packed.shape[1]:  # the kernels do not bounds-check
            raise SpecError(f"input's last dimension must be {packed.shape[1]}, got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        n = flat.shape[0]
        if n <= self.policy.rows_kernel_max_batch:
            xs = np.ascontiguousarray(flat.detach().numpy())
            out = np.empty((n, packed.shape[0]), dtype=np.float32)
            kernels.rows_gather(packed.row_ptr, packed.blocks, packed.steps, packed.escapes, packed.vals, xs, out)
            y = torch.from_numpy(out)
        else:
            xt = kernels.feature_major_input(flat.detach().numpy(), packed.shape[1])
            out_t = np.empty((packed.shape[0], xt.shape[1]), dtype=np.float32)
            kernels.feature_major(packed.row_ptr, packed.blocks, packed.steps, packed.escapes, packed.vals, xt, out_t)
            y = torch.from_numpy(out_t[:, :n]).t()
        y = y + self.bias if self.bias is not None else y.contiguous()
        return y.reshape(*lead, packed.shape[0])

    def conv_offsets(self, h_p: int, w_p: int) -> np.ndarray:
        """Where each packed entry's tap starts in a padded ``(C_in, h_p, w_p)`` input (kept per input size)."""
        assert self.packed is not None and self.geometry is not None
        key = (h_p, w_p)
        if key not in self._offsets:
            g = self.geometry
            self._offsets[key] = self.packed.conv_offsets(g.kernel_size, g.dilation, key)
        return self._offsets[key]

    def _conv_sparse(self, x: Tensor) -> Tensor:
        packed, geo = self.packed, self.geometry
        assert packed is not None and geo is not None
        in_channels = self.shape[1]
        if x.shape[1] != in_channels:  # the kernel does not bounds-check
            raise SpecError(f"input must have {in_channels} channels (N, C, H, W), got shape {tuple(x.shape)}")
        h_p, w_p, h_out, w_out = geo.sizes(x.shape[2], x.shape[3])
        xp = F.pad(x, geo.pads()) if any(geo.pads()) else x
        xp_np = np.ascontiguousarray(xp.detach().numpy())
        kh, kw = geo.kernel_size
        sh, sw = geo.stride
        dh, dw = geo.dilation
        if sh == sw == 1:  # one contiguous multiply-add per kept weight over the input's full width
            wide = np.empty((x.shape[0], packed.shape[0], h_out * w_p), dtype=np.float32)
            planes = xp_np.reshape(x.shape[0], -1)
            offsets = self.conv_offsets(h_p, w_p)
            kernels.conv2d_wide(packed.row_ptr, offsets, packed.vals, planes, wide, (h_out - 1) * w_p + w_out)
            out = wide.reshape(x.shape[0], packed.shape[0], h_out, w_p)[..., :w_out]
        else:
            out = np.empty((x.shape[0], packed.shape[0], h_out, w_out), dtype=np.float32)
            kernels.conv2d_direct(packed.row_ptr, packed.steps, packed.vals, xp_np, out, kh, kw, sh, sw, dh, dw)
        y = torch.from_numpy(out)
        if self.bias is not None:
            y += self.bias.view(1, -1, 1, 1)
        return y

    def extra_repr(self) -> str:
        kind = "conv" if self.geometry is not None else "linear"
        forms = [f for f, held in (("packed", self.packed is not None), ("dense", self.weight is not None)) if held]
        return f"{kind} {self.shape}, density={self.density:.1%}, holds {'+'.join(forms)}"
