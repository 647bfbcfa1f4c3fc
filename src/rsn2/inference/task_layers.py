"""One task's share of a multitask layer inside a converted body, as a plain inference module."""

from __future__ import annotations

import copy

import torch
from torch import nn

from rsn2.inference.policy import SparsePolicy
from rsn2.inference.subnetwork_kernel import SubnetworkKernel
from rsn2.layers import (
    MultitaskConv1d,
    MultitaskConv2d,
    MultitaskEmbedding,
    MultitaskLinear,
    MultitaskMultiheadAttention,
    PerSubnetwork,
    Route,
)


def task_layer(module: nn.Module, route: Route, policy: SparsePolicy) -> nn.Module | None:
    """What ``module`` computes for the route's task, holding only that task's weights; None when
    ``module`` is not a multitask layer on the route (it is copied as it is).

    Linear layers and 2-D convolutions become :class:`SubnetworkKernel` (packed sparse where
    ``policy`` says it wins); 1-D convolutions, embeddings and attention become their
    :mod:`torch.nn` modules with the task's masked kernels (zero at every other position); a
    per-subnetwork layer becomes a copy of the task's own module, in eval mode.
    """
    if isinstance(module, MultitaskMultiheadAttention):
        name = route.subnetworks.get(module.q_proj)
        return None if name is None else _attention(module, name)
    name = route.subnetworks.get(module)
    if name is None:
        return None
    if isinstance(module, (MultitaskLinear, MultitaskConv2d)):
        return SubnetworkKernel.from_layer(module, name, policy)
    if isinstance(module, PerSubnetwork):
        return copy.deepcopy(module.copies[name]).eval()
    if not isinstance(module, (MultitaskConv1d, MultitaskEmbedding)):
        return None
    with torch.no_grad():
        kernel, kernel_bias = module.kernel_for(name)
        weight = kernel.detach().clone()
        bias = kernel_bias.detach().clone() if kernel_bias is not None else None
    if isinstance(module, MultitaskConv1d):
        conv = nn.Conv1d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            bias=bias is not None,
            device=weight.device,
            dtype=weight.dtype,
        )
        conv.weight = nn.Parameter(weight, requires_grad=False)
        if bias is not None:
            conv.bias = nn.Parameter(bias, requires_grad=False)
        return conv
    return nn.Embedding.from_pretrained(weight, freeze=True, padding_idx=module.padding_idx)


def _attention(module: MultitaskMultiheadAttention, name: str) -> nn.MultiheadAttention:
    """A :class:`torch.nn.MultiheadAttention` with the task's projections (its fast paths are safe:
    it holds nothing but the task's weights)."""
    (q, qb), (k, kb), (v, vb), (o, ob) = (
        p.kernel_for(name) for p in (module.q_proj, module.k_proj, module.v_proj, module.out_proj)
    )
    attn = nn.MultiheadAttention(
        module.embed_dim,
        module.num_heads,
        dropout=module.dropout,
        bias=module.has_bias,
        add_zero_attn=module.add_zero_attn,
        kdim=module.kdim,
        vdim=module.vdim,
        batch_first=module.batch_first,
        device=q.device,
        dtype=q.dtype,
    )
    with torch.no_grad():
        if attn._qkv_same_embed_dim:
            assert attn.in_proj_weight is not None
            attn.in_proj_weight.copy_(torch.cat([q, k, v]))
        else:
            attn.q_proj_weight.copy_(q)
            attn.k_proj_weight.copy_(k)
            attn.v_proj_weight.copy_(v)
        attn.out_proj.weight.copy_(o)
        if module.has_bias:
            assert attn.in_proj_bias is not None and qb is not None and kb is not None and vb is not None
            attn.in_proj_bias.copy_(torch.cat([qb, kb, vb]))
            attn.out_proj.bias.copy_(ob)  # type: ignore[arg-type]  # present with bias
    attn.requires_grad_(False)
    return attn.eval()
