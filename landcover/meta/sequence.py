"""Shared machinery of the black-box sequence learners (MANN and SNAIL).

A few-shot task is presented as a sequence of the support items (in a shuffled order),
then the queries. Two label schemes are implemented (the ``labels`` option):

* ``"offset"`` (Santoro et al., "Meta-Learning with Memory-Augmented Neural Networks",
  ICML 2016): the input at step ``t`` is ``[f(x_t), onehot(y_{t-1})]`` (the first gets
  zeros), so the prediction at position ``t`` sees the images up to ``t`` and the labels
  of items before ``t`` only. Every query gets the last support label as its offset
  label. The meta-objective is the query cross-entropy plus ``support_weight`` times the
  cross-entropy at the support positions (Santoro et al. train on every position).
* ``"pairs"`` (Mishra et al., "A Simple Neural Attentive Meta-Learner", ICLR 2018,
  Sec. 4.2): each support step is a labelled pair ``[f(x_t), onehot(y_t)]`` and each
  query an unlabelled ``[f(x_q), 0]``. A support position sees its own label, so its
  prediction is trivial: only the query loss is used (``support_weight`` is 0).

In both schemes every query is one extra position after the whole support set; queries
never see each other (each is a branch of the support sequence), so predictions do not
depend on which other queries are scored.

Subclasses implement :meth:`SequenceLearner.encode_support` (run the support sequence,
returning a summary and a prediction for every support position) and
:meth:`SequenceLearner.decode_queries` (continue the sequence from the summary with one
step per query, batched).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from landcover.meta.embedding import feature_dim_of
from landcover.meta.feature_classifier import FeatureClassifier
from landcover.meta.protocol import AdaptedState
from landcover.tasks.task import Task

#: The label schemes of :class:`SequenceLearner`.
LABEL_SCHEMES = ("offset", "pairs")


class SequenceLearner(FeatureClassifier):
    """Base of learners that read the support set as a sequence.

    Args:
        encoder: Image embedding network (``embed(x)`` when it has one), ``(n, D)``.
        loss_fn: Loss on logits; cross-entropy by default.
        feature_dim: ``D``; default ``encoder.feature_dim``.
        max_way: Largest number of classes per task (size of the one-hot label input and
            of the output layer; ``N``-way tasks use the first ``N`` outputs).
        labels: ``"offset"`` (each step carries the previous item's label, Santoro et al.
            2016) or ``"pairs"`` (each support step carries its own label, queries a zero
            label, Mishra et al. 2018).
        support_weight: Weight of the support-position loss in the meta-objective;
            default 1 with ``"offset"``. With ``"pairs"`` it is 0 (a support position
            sees its own label) and a positive value is an error.

    Raises:
        ValueError: Unknown ``labels`` scheme, or a positive ``support_weight`` with
            ``"pairs"``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        feature_dim: int | None = None,
        max_way: int = 20,
        labels: str = "offset",
        support_weight: float | None = None,
    ) -> None:
        if labels not in LABEL_SCHEMES:
            raise ValueError(f"labels must be one of {LABEL_SCHEMES}; got {labels!r}")
        if labels == "pairs" and support_weight:
            raise ValueError(
                "support_weight must be 0 with labels='pairs' (a support position sees "
                f"its own label); got {support_weight}"
            )
        if support_weight is None:
            support_weight = 1.0 if labels == "offset" else 0.0
        super().__init__(encoder, loss_fn)
        self.feature_dim = feature_dim = feature_dim_of(encoder, feature_dim)
        self.max_way = max_way
        self.labels = labels
        self.support_weight = support_weight
        self.input_dim = feature_dim + max_way

    def sequence_inputs(self, emb: Tensor, labels: Tensor) -> Tensor:
        """Support step inputs, ``(S, D + max_way)``.

        ``[f(x_t), onehot(y_{t-1})]`` with ``"offset"``, ``[f(x_t), onehot(y_t)]`` with
        ``"pairs"``.
        """
        onehot = F.one_hot(labels, self.max_way).to(emb.dtype)
        if self.labels == "offset":
            onehot = torch.cat([onehot.new_zeros(1, self.max_way), onehot[:-1]], dim=0)
        return torch.cat([emb, onehot], dim=1)

    def query_inputs(self, emb: Tensor, last_label: Tensor) -> Tensor:
        """Query step inputs ``(Q, D + max_way)`` after a support set ending in ``last_label``.

        ``[f(x_q), onehot(last_label)]`` with ``"offset"``, ``[f(x_q), 0]`` with
        ``"pairs"``.
        """
        label = emb.new_zeros(len(emb), self.max_way)
        if self.labels == "offset":
            label = label + F.one_hot(last_label.view(1), self.max_way).to(emb.dtype)
        return torch.cat([emb, label], dim=1)

    @abstractmethod
    def encode_support(self, inputs: Tensor) -> tuple[Any, Tensor]:
        """Run the support sequence ``(S, F)``; return ``(summary, logits (S, max_way))``."""

    @abstractmethod
    def decode_queries(self, summary: Any, inputs: Tensor) -> Tensor:
        """One step per query ``(Q, F)`` after the support sequence: ``(Q, max_way)``."""

    def sequence_logits(self, emb: Tensor, labels: Tensor) -> Tensor:
        """Predictions at every support position of a sequence (labels per ``labels``)."""
        return self.encode_support(self.sequence_inputs(emb, labels))[1]

    def adapt(
        self,
        support_x: Tensor,
        support_y: Tensor,
        *,
        steps: int | None = None,
        create_graph: bool = False,
    ) -> AdaptedState:
        """Read the support sequence into a black-box summary (``steps`` is ignored)."""
        if support_y.ndim != 1 or support_y.is_floating_point() or len(support_y) == 0:
            raise ValueError(
                "sequence learners classify: support_y must be non-empty 1-D "
                f"integer labels; got {support_y.dtype} {tuple(support_y.shape)}"
            )
        n_way = int(support_y.max()) + 1
        if n_way > self.max_way:
            raise ValueError(f"this learner handles at most {self.max_way} classes; got {n_way}")
        with torch.set_grad_enabled(create_graph or torch.is_grad_enabled()):
            summary, support_logits = self.encode_support(
                self.sequence_inputs(self.embed(support_x), support_y)
            )
        state = AdaptedState(
            extras={
                "summary": summary,
                "support_logits": support_logits[:, :n_way],
                "last_label": support_y[-1:].clone(),
                "n_way": n_way,
            }
        )
        if create_graph:
            return state
        state = state.detached()
        state.extras["summary"] = _detach(summary)
        return state

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Logits ``(n, N)`` of each input as the next item after the support sequence."""
        inputs = self.query_inputs(self.embed(x), state.extras["last_label"])
        return self.decode_queries(state.extras["summary"], inputs)[:, : state.extras["n_way"]]

    def auxiliary_loss(self, state: AdaptedState, task: Task) -> Tensor | None:
        """``support_weight`` x the loss at the support positions (none when it is 0)."""
        if self.support_weight > 0:
            return self.support_weight * self.loss_fn(
                state.extras["support_logits"], task.support_y
            )
        return None


def _detach(value: Any) -> Any:
    """Detach every tensor of a nested summary (tuples, lists, dicts)."""
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, (list, tuple)):
        return type(value)(_detach(v) for v in value)
    if isinstance(value, dict):
        return {k: _detach(v) for k, v in value.items()}
    return value
