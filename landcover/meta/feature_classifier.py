"""Base of the learners that classify the flat embeddings of a meta-learned encoder.

The closed-form ridge head (Bertinetto, Henriques, Torr & Vedaldi, "Meta-learning with
differentiable closed-form solvers", ICLR 2019), the Conditional Neural Process (Garnelo
et al., "Conditional Neural Processes", ICML 2018) and the sequence learners (MANN,
Santoro et al., ICML 2016; SNAIL, Mishra et al., ICLR 2018) share one outer objective:
adapt on the support set with the graph kept, score the query set, and train the query
cross-entropy end to end through the encoder. This class holds that shared part; each
family implements :meth:`~landcover.meta.protocol.Learner.adapt` and
:meth:`~landcover.meta.protocol.Learner.predict`.
"""

from __future__ import annotations

from torch import Tensor, nn

from landcover.meta.embedding import flat_embedding
from landcover.meta.protocol import AdaptedState, Learner, TaskResult
from landcover.tasks.task import Task


class FeatureClassifier(Learner):
    """A learner on an encoder's flat embeddings, trained by the query cross-entropy.

    Args:
        encoder: Embedding network; ``embed(x)`` when it has one, else ``encoder(x)``;
            outputs are flattened to ``(n, D)``.
        loss_fn: Query loss on logits; cross-entropy by default.
    """

    def __init__(self, encoder: nn.Module, loss_fn: nn.Module | None = None) -> None:
        super().__init__(loss_fn if loss_fn is not None else nn.CrossEntropyLoss())
        self.encoder = encoder

    def embed(self, x: Tensor) -> Tensor:
        """Flattened embeddings ``(n, D)``."""
        return flat_embedding(self.encoder, x)

    def auxiliary_loss(self, state: AdaptedState, task: Task) -> Tensor | None:
        """A term added to the query loss in the meta-objective; none by default.

        Args:
            state: The state adapted to ``task``'s support set (graph kept when training).
            task: The task.

        Returns:
            The extra term, or ``None`` when the objective is the query loss alone.
        """
        return None

    def task_loss(self, task: Task, *, training: bool = True) -> TaskResult:
        """Query cross-entropy (plus :meth:`auxiliary_loss`) given the adapted support set.

        ``query_loss`` and the ``"accuracy"`` metric are those of the query set alone.
        """
        state = self.adapt(task.support_x, task.support_y, create_graph=training)
        logits = self.predict(state, task.query_x)
        query_loss = self.loss_fn(logits, task.query_y)
        extra = self.auxiliary_loss(state, task)
        loss = query_loss if extra is None else query_loss + extra
        acc = float((logits.argmax(1) == task.query_y).float().mean())
        loss = loss if training else loss.detach()
        return TaskResult(loss, float(query_loss.detach()), {"accuracy": acc})
