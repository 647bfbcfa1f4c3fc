"""Multitask multi-head attention: the four projections are multitask linear layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsn2.errors import SpecError
from rsn2.layers.linear import MultitaskLinear


class MultitaskMultiheadAttention(nn.Module):
    r"""Multi-head attention whose query, key, value and output projections are split among
    disjoint subnetworks (:class:`MultitaskLinear` each), computed by
    :func:`torch.nn.functional.multi_head_attention_forward` with the active subnetwork's kernels.

    Takes the arguments and calls of :class:`torch.nn.MultiheadAttention` (``bias``, ``kdim``,
    ``vdim``, ``add_zero_attn``, ``batch_first``, ``dropout``); ``add_bias_kv`` is not supported.
    The projections are held as three kernels, so ``_qkv_same_embed_dim`` is False: PyTorch's fused
    fast paths (which read ``in_proj_weight`` whole, past the owner maps) are never taken.

    Shape: as :class:`torch.nn.MultiheadAttention` (``(N, L, E)`` with ``batch_first``, else
    ``(L, N, E)``).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
    ) -> None:
        super().__init__()
        if embed_dim < 1 or num_heads < 1 or embed_dim % num_heads:
            raise SpecError(f"embed_dim ({embed_dim}) must be a positive multiple of num_heads ({num_heads})")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.add_zero_attn = add_zero_attn
        self.has_bias = bias
        self._qkv_same_embed_dim = False
        self.q_proj = MultitaskLinear(embed_dim, embed_dim, bias=bias)
        self.k_proj = MultitaskLinear(self.kdim, embed_dim, bias=bias)
        self.v_proj = MultitaskLinear(self.vdim, embed_dim, bias=bias)
        self.out_proj = MultitaskLinear(embed_dim, embed_dim, bias=bias)

    @classmethod
    def from_module(cls, mha: nn.MultiheadAttention) -> MultitaskMultiheadAttention:
        """The multitask form of ``mha``, its projection weights copied in (biases start per subnetwork)."""
        if mha.bias_k is not None or mha.bias_v is not None:
            raise SpecError("nn.MultiheadAttention with add_bias_kv=True is not supported")
        out = cls(
            mha.embed_dim,
            mha.num_heads,
            dropout=mha.dropout,
            bias=mha.in_proj_bias is not None,
            add_zero_attn=mha.add_zero_attn,
            kdim=mha.kdim,
            vdim=mha.vdim,
            batch_first=mha.batch_first,
        )
        with torch.no_grad():
            if mha._qkv_same_embed_dim:
                assert mha.in_proj_weight is not None
                q, k, v = mha.in_proj_weight.chunk(3)
            else:
                q, k, v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
            for proj, w in ((out.q_proj, q), (out.k_proj, k), (out.v_proj, v), (out.out_proj, mha.out_proj.weight)):
                proj.weight.copy_(w)
        return out.to(device=mha.out_proj.weight.device, dtype=mha.out_proj.weight.dtype)

    @property
    def in_proj_bias(self) -> Tensor | None:
        """The active subnetwork's query, key and value biases, concatenated (None without bias)."""
        if not self.has_bias:
            return None
        return _joined_bias([p.routed_kernel()[1] for p in (self.q_proj, self.k_proj, self.v_proj)], self.q_proj.weight)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """As :meth:`torch.nn.MultiheadAttention.forward`, with the active subnetwork's projections."""
        batched = query.dim() == 3
        if self.batch_first and batched:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        (q_w, q_b), (k_w, k_b), (v_w, v_b) = (p.routed_kernel() for p in (self.q_proj, self.k_proj, self.v_proj))
        o_w, o_b = self.out_proj.routed_kernel()  # o_b None only without bias or for a candidate
        in_bias = _joined_bias([q_b, k_b, v_b], q_w) if self.has_bias else None
        out, weights = F.multi_head_attention_forward(
            query,
            key,
            value,
            self.embed_dim,
            self.num_heads,
            None,
            in_bias,
            None,
            None,
            self.add_zero_attn,
            self.dropout,
            o_w,
            o_b,
            training=self.training,
            key_padding_mask=key_padding_mask,
            need_weights=need_weights,
            attn_mask=attn_mask,
            use_separate_proj_weight=True,
            q_proj_weight=q_w,
            k_proj_weight=k_w,
            v_proj_weight=v_w,
            average_attn_weights=average_attn_weights,
            is_causal=is_causal,
        )
        if self.batch_first and batched:
            out = out.transpose(1, 0)
        return out, weights

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"


def _joined_bias(biases: list[Tensor | None], like: Tensor) -> Tensor:
    """Query, key and value biases in one ``(3 * E,)`` vector; a subnetwork not registered yet (a
    candidate during a shape check) reads zeros (``like``'s device and dtype)."""
    return torch.cat([b if b is not None else like.new_zeros(like.shape[0]) for b in biases])
