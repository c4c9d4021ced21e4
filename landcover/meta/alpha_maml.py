"""AlphaMAML: online hypergradient adaptation of MAML's inner rate.

Behl, Baydin & Torr, "Alpha MAML: Adaptive Model-Agnostic Meta-Learning", ICML 2019
AutoML workshop (arXiv:1905.07435), applying hypergradient descent (Baydin et al. 2018,
"Online Learning Rate Adaptation with Hypergradient Descent") to MAML. The inner rate
``alpha`` is not meta-learned by the outer optimizer (as Meta-SGD's or MAML++'s rates are)
but adapted online, by its own gradient step after every meta-training task::

    phi(alpha) = inner loop from theta with rate alpha      (MAML, K steps)
    h          = d J(phi(alpha)) / d alpha                    (the hypergradient)
    alpha     <- max(0, alpha - mu * h)                       (mu = ``alpha_lr``)

with ``J`` the task's meta-objective. For one inner step ``h = -grad L_q(phi) . grad
L_s(theta)``, the product of the query gradient after adaptation and the support gradient
before it (Behl et al., eq. for ``alpha``); for several steps in first-order mode it is
``-grad L_q(phi) . sum_k grad L_s(theta_k)``, and in second-order mode the exact total
derivative through the inner loop. We obtain ``h`` by autograd on a scalar leaf that
carries ``alpha`` through the inner loop, so it is always the derivative of what was
actually computed. ``alpha`` is a buffer (stored in ``state_dict`` and model bundles);
evaluation (``training=False``) and :meth:`adapt` use it and never change it.

The paper also adapts the outer rate ``beta`` by hypergradient descent; the outer
optimizer belongs to the trainer here, so only the inner rate is covered.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from landcover.meta.maml import MAML
from landcover.meta.protocol import TaskResult
from landcover.tasks.task import Task


class AlphaMAML(MAML):
    """MAML whose inner rate follows online hypergradient descent (Behl et al. 2019).

    Args:
        model: The network whose initial weights are meta-learned.
        loss_fn: ``(prediction, target) -> scalar``.
        alpha_lr: Hyper step size ``mu`` of the inner rate's update (>= 0; 0 freezes it).
        **options: :class:`~landcover.meta.maml.MAML` options; ``inner_lr`` is the initial
            ``alpha``. With ``vmap=True``, :meth:`batched_meta_loss` takes one step on
            ``alpha`` per meta-batch with the batch-mean hypergradient (the paper's
            per-meta-iteration update); :meth:`task_loss` steps after every task.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        alpha_lr: float = 1e-4,
        **options: Any,
    ) -> None:
        super().__init__(model, loss_fn, **options)
        if float(alpha_lr) < 0:
            raise ValueError(f"alpha_lr must be >= 0; got {alpha_lr}")
        self.alpha_lr = float(alpha_lr)
        dtype = next(model.parameters()).dtype
        self.register_buffer("alpha", torch.tensor(self.inner_lr, dtype=dtype))
        self._alpha_leaf: Tensor | None = None
        self.last_hypergradient: float | None = None

    def _rate(self, name: str, step: int) -> Tensor | float:
        """The current inner rate (a graph leaf while a training task runs)."""
        return self._alpha_leaf if self._alpha_leaf is not None else self.alpha.detach()

    def hypergradient(self, task: Task) -> tuple[Tensor, TaskResult]:
        """``d J / d alpha`` of one task at the current ``alpha``, and the task's result.

        The result's ``loss`` keeps its graph, so the caller can still backpropagate the
        meta-gradient through it.
        """
        leaf = self.alpha.detach().clone().requires_grad_()
        self._alpha_leaf = leaf
        try:
            result = super().task_loss(task, training=True)
        finally:
            self._alpha_leaf = None
        if not result.loss.requires_grad:
            return torch.zeros_like(leaf), result
        (h,) = torch.autograd.grad(result.loss, leaf, retain_graph=True, allow_unused=True)
        return (torch.zeros_like(leaf) if h is None else h.detach()), result

    def _step_alpha(self, h: Tensor) -> None:
        with torch.no_grad():
            self.alpha.copy_((self.alpha - self.alpha_lr * h).clamp_min(0.0))
        self.last_hypergradient = float(h)

    def batched_meta_loss(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        """MAML's vmapped meta-objective, then one hypergradient step on ``alpha``."""
        leaf = self.alpha.detach().clone().requires_grad_()
        self._alpha_leaf = leaf
        try:
            loss, q_loss = super().batched_meta_loss(support_x, support_y, query_x, query_y)
        finally:
            self._alpha_leaf = None
        h = torch.zeros_like(leaf)
        if loss.requires_grad:
            (g,) = torch.autograd.grad(loss, leaf, retain_graph=True, allow_unused=True)
            h = h if g is None else g.detach()
        self._step_alpha(h)
        return loss, q_loss

    def task_loss(self, task: Task, *, training: bool = True) -> TaskResult:
        """MAML's meta-objective; in training also one hypergradient step on ``alpha``."""
        if not training:
            return super().task_loss(task, training=False)
        h, result = self.hypergradient(task)
        self._step_alpha(h)
        result.metrics["inner_lr"] = float(self.alpha)
        result.metrics["hypergradient"] = float(h)
        return result
