"""The one protocol every learner implements, whatever its family.

Optimization-based learners (MAML and friends), non-parametric ones (prototypes, ridge
heads) and black-box ones (CNP, MANN, SNAIL) all expose the same three operations, so
the Lightning trainer, the CLI, the benchmarks and the REST service never care which
learner runs:

* :meth:`Learner.adapt` turns a support set into an adapted state (fast weights,
  prototypes, a context vector, a black-box summary);
* :meth:`Learner.predict` maps inputs to outputs (logits or regression values) with that
  state;
* :meth:`Learner.task_loss` is the differentiable meta-objective of one task; its gradient
  with respect to ``learner.parameters()`` is the learner's meta-gradient (learners whose
  update is not the gradient of a loss, such as Reptile and iMAML, return a surrogate whose
  gradient is their update direction). :meth:`Learner.meta_backward` accumulates it over a
  meta-batch with one backward per task, which keeps memory at one task's graph.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from landcover.tasks.task import Task


@dataclass
class AdaptedState:
    """What adaptation produces; each family fills the fields it needs.

    Attributes:
        params: Fast weights by parameter name (optimization-based learners); parameters not
            listed fall back to the meta-parameters.
        buffers: Buffers to use with ``params`` (e.g. per-step BatchNorm statistics).
        extras: Family-specific state: ``"prototypes"``, ``"context"``, ``"weights"`` of a
            closed-form head, a black-box ``"summary"``, the support set itself, ...
        step: Number of inner steps taken (selects per-step rates and statistics).
    """

    params: dict[str, Tensor] = field(default_factory=dict)
    buffers: dict[str, Tensor] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    step: int = 0

    def detached(self) -> AdaptedState:
        """Return a copy cut from the autograd graph (for serving and evaluation)."""

        def cut(v: Any) -> Any:
            return v.detach() if isinstance(v, Tensor) else v

        return AdaptedState(
            {k: v.detach() for k, v in self.params.items()},
            {k: v.detach() for k, v in self.buffers.items()},
            {k: cut(v) for k, v in self.extras.items()},
            self.step,
        )


@dataclass
class TaskResult:
    """Outcome of one task's meta-objective.

    Attributes:
        loss: Scalar whose gradient w.r.t. the learner's parameters is this task's
            meta-gradient (may be a surrogate; see the module docstring).
        query_loss: The plain query loss after adaptation, detached, for logging.
        metrics: Extra detached scalars (accuracy, loss before adaptation, ...).
        state: The adapted state, when the caller asked to keep it.
    """

    loss: Tensor
    query_loss: float
    metrics: dict[str, float] = field(default_factory=dict)
    state: AdaptedState | None = None


class Learner(nn.Module, ABC):
    """Base class of every learner.

    Everything meta-learned (the network's initial weights, learned inner rates, embedding
    networks, black-box encoders) is a registered parameter or submodule, so
    ``learner.parameters()`` is what the outer optimizer steps and ``learner.state_dict()``
    is what a model bundle stores.

    Subclasses set ``loss_fn`` (a callable ``(prediction, target) -> scalar``) and
    implement :meth:`adapt`, :meth:`predict` and :meth:`task_loss`.
    """

    #: Number of inner steps used when ``adapt`` is called without ``steps``.
    default_steps: int = 0

    def __init__(self, loss_fn: nn.Module | None = None) -> None:
        super().__init__()
        self.loss_fn = loss_fn if loss_fn is not None else nn.MSELoss()

    @abstractmethod
    def adapt(
        self,
        support_x: Tensor,
        support_y: Tensor,
        *,
        steps: int | None = None,
        create_graph: bool = False,
    ) -> AdaptedState:
        """Adapt to a support set.

        Args:
            support_x: Support inputs.
            support_y: Support targets.
            steps: Inner steps (optimization-based learners); ``None`` uses the trained
                number. Learners without an inner loop ignore it.
            create_graph: Keep the graph for differentiating through adaptation.

        Returns:
            The adapted state.
        """

    @abstractmethod
    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Predict outputs (logits or values) for ``x`` with an adapted state."""

    @abstractmethod
    def task_loss(self, task: Task, *, training: bool = True) -> TaskResult:
        """Meta-objective of one task (see the module docstring)."""

    def meta_loss(self, tasks: Sequence[Task], *, training: bool = True) -> Tensor:
        """Mean meta-objective over a batch of tasks (one graph for all tasks)."""
        losses = [self.task_loss(t, training=training).loss for t in tasks]
        return torch.stack(losses).mean()

    def meta_backward(self, tasks: Sequence[Task]) -> dict[str, float]:
        """Accumulate the mean meta-gradient of ``tasks`` into ``.grad``, task by task.

        One backward per task frees each task's graph before the next is built.

        Returns:
            Mean of ``query_loss`` and of every metric over the tasks.
        """
        totals: dict[str, float] = {}
        n = len(tasks)
        if n == 0:
            raise ValueError("meta_backward needs at least one task; got an empty meta-batch")
        for task in tasks:
            result = self.task_loss(task, training=True)
            if result.loss.requires_grad:
                (result.loss / n).backward()
            totals["query_loss"] = totals.get("query_loss", 0.0) + result.query_loss / n
            for k, v in result.metrics.items():
                totals[k] = totals.get(k, 0.0) + float(v) / n
        return totals

    def on_epoch_start(self, epoch: int) -> None:
        """Hook for schedules that depend on the meta-epoch (MAML++ annealing)."""
