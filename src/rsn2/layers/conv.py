"""Multitask 2-D convolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.utils import _pair

from rsn2.errors import SpecError
from rsn2.layers.base import MultitaskKernelLayer, copy_values, source_factory


class MultitaskConv2d(MultitaskKernelLayer):
    r"""A 2-D convolution whose kernel is split among disjoint subnetworks.

    Layout follows :class:`torch.nn.Conv2d` (``groups`` is always 1).

    Args:
        in_channels: channels of the input image.
        out_channels: channels produced by the convolution.
        kernel_size: size of the kernel (int or pair).
        stride: stride (int or pair). Default 1.
        padding: int, pair, ``"valid"`` or ``"same"``. Default 0 (``"valid"``).
        dilation: spacing between kernel elements (int or pair). Default 1.
        bias: whether every subnetwork gets its own additive bias.

    Shape:
        - Input: :math:`(N, C_{in}, H_{in}, W_{in})`.
        - Output: :math:`(N, C_{out}, H_{out}, W_{out})` as for :class:`torch.nn.Conv2d`.

    Attributes:
        weight: ``(out_channels, in_channels, kh, kw)``.
        owner: ``uint8`` of the same shape.
        biases: name -> ``(out_channels,)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        _check_channels_and_padding(in_channels, out_channels, padding)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding: tuple[int, int] | str = padding if isinstance(padding, str) else _pair(padding)
        self.dilation = _pair(dilation)
        if padding == "same" and self.stride != (1, 1):
            raise SpecError("padding='same' requires stride 1 (as in torch.nn.Conv2d)")
        super().__init__(
            (out_channels, in_channels, *self.kernel_size), out_channels, bias=bias, device=device, dtype=dtype
        )

    @classmethod
    def from_module(cls, conv: torch.nn.Conv2d) -> MultitaskConv2d:
        """The multitask form of ``conv`` (``groups=1``, zero padding): its weight copied in, one bias
        per subnetwork (from zero); from the meta device, Glorot-uniform weights (as
        :meth:`MultitaskLinear.from_module`)."""
        _check_convertible(conv)
        w = conv.weight
        out = cls(
            conv.in_channels,
            conv.out_channels,
            _pair(conv.kernel_size),
            stride=_pair(conv.stride),
            padding=conv.padding if isinstance(conv.padding, str) else _pair(conv.padding),
            dilation=_pair(conv.dilation),
            bias=conv.bias is not None,
            **source_factory(w),
        )
        copy_values(out.weight, w)
        return out

    def _apply_kernel(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if x.dim() == 4 and laid_out_channels_last(self.weight) and not laid_out_channels_last(x):
            x = torch.empty_like(x, memory_format=torch.channels_last).copy_(x)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, bias={self.has_bias}, {self._ownership_repr()}"
        )


def laid_out_channels_last(t: Tensor) -> bool:
    """Whether the 4-d ``t`` has exactly the channels_last strides and not the contiguous ones.

    Exact strides, not :meth:`torch.Tensor.is_contiguous`, which ignores the stride of a size-1
    dimension: a 1-channel batch counts as contiguous in both layouts, and PyTorch's convolution then
    takes the NCHW layout for it and returns its output NCHW, which the next channels_last
    convolution converts (forward and backward). So a convolution whose kernel is held channels_last
    (training in channels_last, see :func:`rsn2.training.precision.channels_last`) first gives its
    input the same strides (``docs/decisions/training-precision.md``).
    """
    if t.dim() != 4:
        return False
    _, c, h, w = t.shape
    return t.stride() == (c * h * w, 1, w * c, c) and t.stride() != (c * h * w, h * w, w, 1)


class MultitaskConv1d(MultitaskKernelLayer):
    r"""A 1-D convolution whose kernel is split among disjoint subnetworks.

    Layout follows :class:`torch.nn.Conv1d` (``groups`` is always 1, zero padding).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, bias: as for
            :class:`torch.nn.Conv1d` (``padding`` an int, ``"valid"`` or ``"same"``).

    Shape:
        - Input: :math:`(N, C_{in}, L_{in})`; output :math:`(N, C_{out}, L_{out})` as for ``Conv1d``.

    Attributes:
        weight: ``(out_channels, in_channels, k)``; ``owner`` of the same shape; ``biases``: name ->
        ``(out_channels,)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | str = 0,
        dilation: int = 1,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        _check_channels_and_padding(in_channels, out_channels, padding)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = (int(kernel_size),)
        self.stride = (int(stride),)
        self.padding: tuple[int] | str = padding if isinstance(padding, str) else (int(padding),)
        self.dilation = (int(dilation),)
        super().__init__(
            (out_channels, in_channels, *self.kernel_size), out_channels, bias=bias, device=device, dtype=dtype
        )

    @classmethod
    def from_module(cls, conv: torch.nn.Conv1d) -> MultitaskConv1d:
        """The multitask form of ``conv`` (``groups=1``, zero padding), as :meth:`MultitaskConv2d.from_module`."""
        _check_convertible(conv)
        w = conv.weight
        padding = conv.padding if isinstance(conv.padding, str) else int(conv.padding[0])
        out = cls(
            conv.in_channels,
            conv.out_channels,
            int(conv.kernel_size[0]),
            stride=int(conv.stride[0]),
            padding=padding,
            dilation=int(conv.dilation[0]),
            bias=conv.bias is not None,
            **source_factory(w),
        )
        copy_values(out.weight, w)
        return out

    def _apply_kernel(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.conv1d(x, weight, bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, bias={self.has_bias}, {self._ownership_repr()}"
        )


def _check_convertible(conv: torch.nn.Conv1d | torch.nn.Conv2d) -> None:
    """Raise :class:`SpecError` for convolutions a multitask kernel does not express."""
    if conv.groups != 1:
        raise SpecError(f"{type(conv).__name__} with groups={conv.groups} is not supported (groups=1 only)")
    if conv.padding_mode != "zeros":
        raise SpecError(
            f"{type(conv).__name__} with padding_mode={conv.padding_mode!r} is not supported "
            "(padding_mode='zeros' only)"
        )


def _check_channels_and_padding(in_channels: int, out_channels: int, padding: object) -> None:
    """Raise :class:`SpecError` for channel counts below 1 or a padding string torch does not take."""
    if in_channels < 1 or out_channels < 1:
        raise SpecError(f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}")
    if isinstance(padding, str) and padding not in ("valid", "same"):
        raise SpecError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
