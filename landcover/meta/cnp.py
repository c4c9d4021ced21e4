"""Conditional Neural Process for few-shot classification.

Garnelo, Rosenbaum, Maddison, Ramalho, Saxton, Shanahan, Teh, Rezende & Eslami,
"Conditional Neural Processes", ICML 2018.

A CNP encodes each support pair ``(x_i, y_i)`` with an MLP ``h`` into ``r_i``, aggregates
them with a permutation-invariant mean, and decodes a target ``x`` together with the
aggregate with an MLP ``g``. For classification the paper aggregates per class (Sec. 4.3,
Omniglot): ``r_k = mean_{i: y_i = k} h(f(x_i), onehot(y_i))`` plus the mean over the whole
support set ``r = mean_i h(...)``, and the decoder scores each class,
``logit_k = g([f(x), r_k, f'(x) * r_k, r])`` with ``f'(x)`` a linear projection of the
embedding (the product term makes comparisons easy to learn for the MLP). Only means
touch the support set, so predictions do not depend on the order of the support set, and
nothing is adapted by gradient steps: ``f``, ``h`` and ``g`` are meta-learned end to end.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from landcover.meta.embedding import feature_dim_of
from landcover.meta.feature_classifier import FeatureClassifier
from landcover.meta.protocol import AdaptedState


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class CNP(FeatureClassifier):
    """Conditional Neural Process classifier behind the learner protocol.

    Args:
        encoder: Image embedding network ``f`` (``embed(x)`` when it has one), ``(n, D)``.
        loss_fn: Query loss on logits; cross-entropy by default.
        feature_dim: ``D``; default ``encoder.feature_dim``.
        max_way: Largest number of classes per task (size of the one-hot label input).
        hidden: Width of ``h``, ``g`` and of the representation ``r``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        feature_dim: int | None = None,
        max_way: int = 20,
        hidden: int = 128,
    ) -> None:
        super().__init__(encoder, loss_fn)
        self.max_way = max_way
        feature_dim = feature_dim_of(encoder, feature_dim)
        self.h = mlp([feature_dim + max_way, hidden, hidden, hidden])
        self.project = nn.Linear(feature_dim, hidden)
        self.g = mlp([feature_dim + 3 * hidden, hidden, hidden, 1])

    def adapt(
        self,
        support_x: Tensor,
        support_y: Tensor,
        *,
        steps: int | None = None,
        create_graph: bool = False,
    ) -> AdaptedState:
        """Aggregate the encoded support pairs (``steps`` is ignored)."""
        n_way = int(support_y.max()) + 1
        if n_way > self.max_way:
            raise ValueError(f"this CNP handles at most {self.max_way} classes; got {n_way}")
        with torch.set_grad_enabled(create_graph or torch.is_grad_enabled()):
            e = self.embed(support_x)
            r_i = self.h(torch.cat([e, F.one_hot(support_y, self.max_way).to(e.dtype)], 1))
            sums = r_i.new_zeros(n_way, r_i.shape[1]).index_add(0, support_y, r_i)
            counts = torch.bincount(support_y, minlength=n_way).clamp(min=1).to(e.dtype)
            r_k = sums / counts.unsqueeze(1)
            r = r_i.mean(0)
        state = AdaptedState(extras={"class_context": r_k, "context": r})
        return state if create_graph else state.detached()

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Decode every query with every class representation: logits ``(n, N)``."""
        e = self.embed(x)
        r_k, r = state.extras["class_context"], state.extras["context"]
        n, k = e.shape[0], r_k.shape[0]
        p = self.project(e)
        parts = [
            e.unsqueeze(1).expand(n, k, -1),
            r_k.unsqueeze(0).expand(n, k, -1),
            p.unsqueeze(1) * r_k.unsqueeze(0),
            r.expand(n, k, -1),
        ]
        return self.g(torch.cat(parts, dim=2)).squeeze(2)
