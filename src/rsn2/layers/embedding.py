"""Multitask embedding table."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rsn2.errors import SpecError
from rsn2.layers.base import MultitaskKernelLayer, copy_values, source_factory


class MultitaskEmbedding(MultitaskKernelLayer):
    r"""An embedding table whose entries are split among disjoint subnetworks.

    Subnetwork ``s`` looks token ``i`` up as row ``i`` of :math:`W \odot M_s`: the entries it owns,
    zero elsewhere. Embeddings have no bias. Layout follows :class:`torch.nn.Embedding`.

    Args:
        num_embeddings: size of the vocabulary.
        embedding_dim: size of each vector.
        padding_idx: as for :class:`torch.nn.Embedding` (that row's gradient is zero).

    Shape:
        - Input: :math:`(*)` int64 token ids in ``[0, num_embeddings)``.
        - Output: :math:`(*, \text{embedding\_dim})`.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if num_embeddings < 1 or embedding_dim < 1:
            raise SpecError(f"num_embeddings and embedding_dim must be >= 1, got {num_embeddings}, {embedding_dim}")
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        if padding_idx is not None and padding_idx < 0:
            padding_idx += num_embeddings
        self.padding_idx = padding_idx
        super().__init__((num_embeddings, embedding_dim), embedding_dim, bias=False, device=device, dtype=dtype)

    @classmethod
    def from_module(cls, embedding: torch.nn.Embedding) -> MultitaskEmbedding:
        """The multitask form of ``embedding``: its table copied in. ``max_norm``, ``sparse`` and
        ``scale_grad_by_freq`` are not supported."""
        if embedding.max_norm is not None or embedding.sparse or embedding.scale_grad_by_freq:
            raise SpecError("nn.Embedding with max_norm, sparse or scale_grad_by_freq is not supported")
        w = embedding.weight
        out = cls(embedding.num_embeddings, embedding.embedding_dim, embedding.padding_idx, **source_factory(w))
        copy_values(out.weight, w)
        return out

    def reset_parameters(self) -> None:
        """N(0, 1) entries, as :class:`torch.nn.Embedding`."""
        torch.nn.init.normal_(self.weight)

    def _apply_kernel(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.embedding(x, weight, self.padding_idx)

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}, {self._ownership_repr()}"
