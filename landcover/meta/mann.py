"""Memory-Augmented Neural Network (MANN) with an LSTM controller and LRUA memory.

Santoro, Bartunov, Botvinick, Wierstra & Lillicrap, "Meta-Learning with Memory-Augmented
Neural Networks", ICML 2016.

Variant: the full one, an **LSTM controller with an external memory** addressed by
content and written with Least Recently Used Access (LRUA), not the plain-LSTM ablation.
Per step ``t`` (the paper's Sec. 3.2 equations, ``R`` read heads):

* controller: ``h_t, c_t = LSTM([x_t, onehot(y_{t-1}), r_{t-1}], (h_{t-1}, c_{t-1}))``;
* per head: key ``k_t = tanh(W_k h_t)``, write gate ``g = sigmoid(W_g h_t)``,
  write weights ``w^w_t = g w^r_{t-1} + (1 - g) w^lu_{t-1}``;
* before writing, the least-used slot (by ``w^u_{t-1}``) is zeroed; then
  ``M_t = M_{t-1} + sum_heads w^w_t k_t^T``;
* read: ``w^r_t = softmax(cosine(k_t, M_t))``, ``r_t = w^r_t M_t``;
* usage ``w^u_t = gamma w^u_{t-1} + sum_heads (w^r_t + w^w_t)`` and ``w^lu_t`` marks the
  ``R`` least used slots;
* output logits ``W_o [h_t, r_t]``.

Labels are offset by one step by default, as in the paper (``labels="offset"``, see
:mod:`landcover.meta.sequence`), so an item's prediction sees only the labels of earlier
items; ``labels="pairs"`` feeds labelled support pairs instead (the SNAIL scheme). The
support sequence runs once; the queries then take one step each, batched, from the
memory state after the support set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from landcover.meta.sequence import SequenceLearner

State = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


class MANN(SequenceLearner):
    """LSTM controller with an LRUA external memory.

    Args:
        encoder: Image embedding network, ``(n, D)``.
        loss_fn: Loss on logits; cross-entropy by default.
        feature_dim: ``D``; default ``encoder.feature_dim``.
        max_way: Largest number of classes per task.
        hidden: LSTM controller width.
        slots: Number of memory slots.
        slot_dim: Width of a memory slot.
        heads: Number of read (and write) heads.
        gamma: Usage decay.
        labels: ``"offset"`` (Santoro et al., default) or ``"pairs"`` (see
            :class:`~landcover.meta.sequence.SequenceLearner`).
        support_weight: Weight of the support-position loss (default 1 with
            ``"offset"``; 0, and nothing else, with ``"pairs"``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        feature_dim: int | None = None,
        max_way: int = 20,
        hidden: int = 200,
        slots: int = 128,
        slot_dim: int = 40,
        heads: int = 4,
        gamma: float = 0.95,
        labels: str = "offset",
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
        if heads > slots:
            raise ValueError(f"MANN needs heads <= slots; got {heads} heads, {slots} slots")
        self.hidden, self.slots, self.slot_dim, self.heads = hidden, slots, slot_dim, heads
        self.gamma = gamma
        self.controller = nn.LSTMCell(self.input_dim + heads * slot_dim, hidden)
        self.key = nn.Linear(hidden, heads * slot_dim)
        self.gate = nn.Linear(hidden, heads)
        self.out = nn.Linear(hidden + heads * slot_dim, max_way)

    def initial_state(self, batch: int, like: Tensor) -> State:
        """Zero controller state, a memory of small constants, no usage yet."""
        z = like.new_zeros
        memory = like.new_full((batch, self.slots, self.slot_dim), 1e-6)
        w_lu = z(batch, self.slots)
        w_lu[:, : self.heads] = 1.0
        return (
            z(batch, self.hidden),
            z(batch, self.hidden),
            memory,
            z(batch, self.heads, self.slots),  # previous read weights
            z(batch, self.slots),  # usage
            w_lu,  # least-used indicator
            z(batch, self.heads * self.slot_dim),  # previous read vectors
        )

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One time step for a batch of sequences: ``x (B, F) -> logits (B, max_way)``."""
        h, c, memory, w_r, w_u, w_lu, r = state
        h, c = self.controller(torch.cat([x, r], dim=1), (h, c))
        b = x.shape[0]
        keys = torch.tanh(self.key(h)).view(b, self.heads, self.slot_dim)
        g = torch.sigmoid(self.gate(h)).unsqueeze(2)  # (B, heads, 1)
        w_w = g * w_r + (1 - g) * w_lu.unsqueeze(1)  # (B, heads, slots)
        # zero the least used slot before writing (the paper's LRUA)
        least = F.one_hot(w_u.argmin(dim=1), self.slots).to(memory.dtype)
        memory = memory * (1 - least).unsqueeze(2)
        memory = memory + w_w.transpose(1, 2) @ keys
        sim = F.cosine_similarity(keys.unsqueeze(2), memory.unsqueeze(1), dim=3, eps=1e-8)
        w_r = torch.softmax(sim, dim=2)
        reads = (w_r @ memory).reshape(b, -1)
        w_u = self.gamma * w_u + w_r.sum(1) + w_w.sum(1)
        nth = torch.kthvalue(w_u, self.heads, dim=1, keepdim=True).values
        w_lu = (w_u <= nth).to(w_u.dtype)
        logits = self.out(torch.cat([h, reads], dim=1))
        return logits, (h, c, memory, w_r, w_u, w_lu, reads)

    def encode_support(self, inputs: Tensor) -> tuple[State, Tensor]:
        """Run the support sequence (batch 1) step by step."""
        state = self.initial_state(1, inputs)
        logits = []
        for t in range(inputs.shape[0]):
            out, state = self.step(inputs[t : t + 1], state)
            logits.append(out)
        return state, torch.cat(logits, dim=0)

    def decode_queries(self, summary: State, inputs: Tensor) -> Tensor:
        """One step per query from the post-support state (queries as a batch)."""
        q = inputs.shape[0]
        state = tuple(s.expand(q, *s.shape[1:]) for s in summary)
        return self.step(inputs, state)[0]  # type: ignore[arg-type]
