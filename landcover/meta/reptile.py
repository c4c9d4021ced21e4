"""Reptile: move the initialisation towards the task-adapted weights.

Nichol, Achiam & Schulman 2018, "On First-Order Meta-Learning Algorithms": adapt
``phi = SGD_k(theta)`` on the task and update ``theta <- theta + epsilon (phi - theta)``.
Reptile's update is not the gradient of a loss, so :meth:`Reptile.task_loss` returns the
surrogate ``0.5 * ||theta - stopgrad(phi)||^2`` whose gradient is ``theta - phi``: one
step of plain SGD with learning rate ``epsilon`` on it is exactly Reptile's update (any
other optimizer consumes the same direction, as in the paper's Adam variant).

Only the adapted parameters move (``adapt`` option); others get a zero direction.
Step-count rule: plain SGD, any number of steps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from landcover.meta.functional import named_params
from landcover.meta.maml import MAML
from landcover.meta.protocol import TaskResult
from landcover.meta.stacking import task_metrics
from landcover.tasks.task import Task


class Reptile(MAML):
    """Reptile (first order by construction).

    Args:
        model: The network.
        loss_fn: Task loss.
        steps: Inner SGD steps (the paper uses several; default 5).
        **options: Other :class:`~landcover.meta.maml.MAML` options (``first_order`` is
            meaningless here and forced on).
    """

    def __init__(
        self, model: nn.Module, loss_fn: nn.Module | None = None, *, steps: int = 5, **options: Any
    ) -> None:
        options["first_order"] = True
        super().__init__(model, loss_fn, steps=steps, **options)

    def _surrogate(self, meta: dict[str, Tensor], fast: dict[str, Tensor]) -> Tensor:
        total = meta[self.adapt_names[0]].new_zeros(())
        for n in self.adapt_names:
            total = total + 0.5 * (meta[n] - fast[n].detach()).pow(2).sum()
        return total

    def task_loss(self, task: Task, *, training: bool = True) -> TaskResult:
        """Surrogate with gradient ``theta - phi``; the query loss is logged at ``phi``."""
        meta = named_params(self.model)
        with torch.enable_grad():
            fast = self._fast_weights(meta, task.support_x, task.support_y, training=training)
        fast = {k: v.detach() for k, v in fast.items()}
        with torch.no_grad():
            out = self._forward(
                meta, fast, self._encode(meta, task.query_x, training), None, training
            )
            q_loss = float(self.loss_fn(out, task.query_y))
        loss = self._surrogate(meta, fast)
        return TaskResult(
            loss if training else loss.detach(),
            q_loss,
            task_metrics(out, task.query_y, self.loss_fn),
        )

    def batched_meta_loss(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Mean surrogate and mean query loss of stacked tasks (vmap)."""
        meta = named_params(self.model)
        detached = named_params(self.model, detach=True)

        def one(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> tuple[Tensor, Tensor]:
            fast = self._fast_weights(detached, sx, sy, training=True, functional=True)
            out = self._forward(detached, fast, self._encode(detached, qx, True), None, True)
            return self._surrogate(meta, fast), self.loss_fn(out, qy)

        losses, q_losses = torch.func.vmap(one)(support_x, support_y, query_x, query_y)
        return losses.mean(), q_losses.mean().detach()
