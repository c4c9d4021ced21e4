"""SNAIL: a Simple Neural AttentIve meta-Learner.

Mishra, Rohaninejad, Chen & Abbeel, "A Simple Neural Attentive Meta-Learner", ICLR 2018.

The support set is read as a sequence by interleaved **temporal convolutions** and
**causal attention** (the paper's Sec. 3 and Appendix B). By default it is presented as
in the paper's few-shot classification setup (Sec. 4.2, ``labels="pairs"``): each
support step is a labelled pair ``[f(x_t), onehot(y_t)]``, each query an unlabelled
``[f(x_q), 0]`` after the whole support set, and only the query predictions are trained,
so the attention can match a query with a support image and read that item's label.
``labels="offset"`` uses the label-offset scheme of Santoro et al. (ICML 2016) instead
(each step carries the previous item's label; see :mod:`landcover.meta.sequence`).
The blocks:

* ``DenseBlock(R, D)``: a causal convolution of kernel 2 and dilation ``R`` with ``D``
  filters, gated activation ``tanh(f) * sigmoid(g)``, concatenated to its input;
* ``TCBlock(T, D)``: dense blocks with dilations ``1, 2, 4, ..., 2^(ceil(log2 T) - 1)``;
* ``AttentionBlock(K, V)``: single-head causal key/value attention (position ``t``
  attends to positions ``<= t``), its read concatenated to its input.

The few-shot classification architecture is ``Attn(K1, V1) -> TC -> Attn(K2, V2) -> TC ->
Attn(K3, V3) -> linear``; the paper's Omniglot sizes are (64, 32), 128 filters, (256, 128),
(512, 256); the defaults here are smaller for CPU budgets and configurable.

Every layer is causal, so the support positions are computed once and each query is one
extra position attached to the end of the support sequence: a layer's query output needs
only the cached support inputs of that layer (``forward_query``). The result equals
running each query appended to the full sequence, at a fraction of the cost.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from landcover.meta.sequence import SequenceLearner


class DenseBlock(nn.Module):
    """Causal dilated convolution (kernel 2) with gated activation, concatenated to input."""

    def __init__(self, in_dim: int, filters: int, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.out_dim = in_dim + filters
        self.current = nn.Linear(in_dim, 2 * filters)  # tap at t
        self.previous = nn.Linear(in_dim, 2 * filters, bias=False)  # tap at t - dilation

    def _gate(self, pre: Tensor) -> Tensor:
        f, g = pre.chunk(2, dim=-1)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, x: Tensor) -> Tensor:
        """Sequence ``(S, C) -> (S, C + filters)``."""
        d = self.dilation
        shifted = torch.cat([x.new_zeros(min(d, len(x)), x.shape[1]), x[: max(len(x) - d, 0)]])
        return torch.cat([x, self._gate(self.current(x) + self.previous(shifted))], dim=1)

    def forward_query(self, support: Tensor, xq: Tensor) -> Tensor:
        """Queries ``(Q, C)`` at position ``len(support)``: ``(Q, C + filters)``."""
        t = len(support) - self.dilation
        prev = support[t] if t >= 0 else support.new_zeros(support.shape[1])
        pre = self.current(xq) + self.previous(prev).unsqueeze(0)
        return torch.cat([xq, self._gate(pre)], dim=1)


class AttentionBlock(nn.Module):
    """Causal single-head attention, its read concatenated to its input."""

    def __init__(self, in_dim: int, key_dim: int, value_dim: int) -> None:
        super().__init__()
        self.out_dim = in_dim + value_dim
        self.scale = 1.0 / math.sqrt(key_dim)
        self.q = nn.Linear(in_dim, key_dim)
        self.k = nn.Linear(in_dim, key_dim)
        self.v = nn.Linear(in_dim, value_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Sequence ``(S, C) -> (S, C + value_dim)``; position t attends to <= t."""
        s = len(x)
        scores = (self.q(x) @ self.k(x).T) * self.scale
        future = torch.ones(s, s, dtype=torch.bool, device=x.device).triu(1)
        attn = torch.softmax(scores.masked_fill(future, float("-inf")), dim=1)
        return torch.cat([x, attn @ self.v(x)], dim=1)

    def forward_query(self, support: Tensor, xq: Tensor) -> Tensor:
        """Queries attend to the whole support sequence and to themselves."""
        q = self.q(xq)
        s_scores = q @ self.k(support).T  # (Q, S)
        self_scores = (q * self.k(xq)).sum(1, keepdim=True)  # (Q, 1)
        attn = torch.softmax(torch.cat([s_scores, self_scores], 1) * self.scale, dim=1)
        read = attn[:, :-1] @ self.v(support) + attn[:, -1:] * self.v(xq)
        return torch.cat([xq, read], dim=1)


class SNAIL(SequenceLearner):
    """SNAIL few-shot classifier.

    Args:
        encoder: Image embedding network, ``(n, D)``.
        loss_fn: Loss on logits; cross-entropy by default.
        feature_dim: ``D``; default ``encoder.feature_dim``.
        max_way: Largest number of classes per task.
        max_length: Longest support sequence expected (sets the TC dilations; longer
            sequences still work, attention covers the whole past).
        attention: ``(key, value)`` sizes of the three attention blocks.
        filters: Filters per dense block of the two TC blocks.
        labels: ``"pairs"`` (the SNAIL paper, default) or ``"offset"`` (Santoro et al.;
            see :class:`~landcover.meta.sequence.SequenceLearner`).
        support_weight: Weight of the support-position loss (0, and nothing else, with
            ``"pairs"``; default 1 with ``"offset"``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        feature_dim: int | None = None,
        max_way: int = 20,
        max_length: int = 101,
        attention: tuple[tuple[int, int], ...] = ((32, 16), (64, 32), (128, 64)),
        filters: int = 32,
        labels: str = "pairs",
        support_weight: float | None = None,
    ) -> None:
        super().__init__(
            encoder,
            loss_fn,
            feature_dim=feature_dim,
            max_way=max_way,
            labels=labels,
            support_weight=support_weight,
        )
        if len(attention) != 3:
            raise ValueError(f"SNAIL uses three attention blocks; got {len(attention)} sizes")
        n_dense = max(1, math.ceil(math.log2(max(max_length, 2))))
        layers: list[nn.Module] = []
        dim = self.input_dim
        for i, (k, v) in enumerate(attention):
            layers.append(AttentionBlock(dim, k, v))
            dim = layers[-1].out_dim
            if i < 2:
                for j in range(n_dense):
                    layers.append(DenseBlock(dim, filters, 2**j))
                    dim = layers[-1].out_dim
        self.layers = nn.ModuleList(layers)
        self.out = nn.Linear(dim, max_way)

    def encode_support(self, inputs: Tensor) -> tuple[list[Tensor], Tensor]:
        """Run the causal stack over the support sequence, caching every layer's input."""
        cache, x = [], inputs
        for layer in self.layers:
            cache.append(x)
            x = layer(x)
        return cache, self.out(x)

    def decode_queries(self, summary: list[Tensor], inputs: Tensor) -> Tensor:
        """Each query as the next position after the support sequence."""
        x = inputs
        for layer, support in zip(self.layers, summary, strict=True):
            x = layer.forward_query(support, x)
        return self.out(x)
