"""Non-meta-learning baselines exposed as learners, so every benchmark can list them.

* :class:`PretrainFinetune`: train the network on the pooled data of all training tasks
  (support and query together, no inner loop), then fine-tune on a new task's support set
  with plain SGD (the "transfer learning" baseline of Finn et al. 2017, section 5.1).
* :class:`Scratch`: a freshly initialised network trained on the support set only.

Both adapt with the same functional SGD loop as MAML (``finetune_lr``, ``steps``,
``adapt`` subset, BatchNorm policy), so their numbers compare step for step.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from landcover.meta.functional import TensorDict, named_params
from landcover.meta.maml import MAML
from landcover.meta.protocol import TaskResult
from landcover.meta.stacking import task_metrics
from landcover.tasks.task import Task


class PretrainFinetune(MAML):
    """Pretrain on pooled tasks, fine-tune on the support set.

    Args:
        model: The network.
        loss_fn: Task loss.
        finetune_lr: SGD rate of the fine-tuning steps.
        steps: Fine-tuning steps used by :meth:`adapt` by default.
        **options: Other :class:`~landcover.meta.maml.MAML` options (``adapt`` selects
            the fine-tuned parameters, e.g. the head only).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        finetune_lr: float = 0.01,
        steps: int = 10,
        **options: Any,
    ) -> None:
        options["first_order"] = True
        super().__init__(model, loss_fn, inner_lr=finetune_lr, steps=steps, **options)

    def _pooled(self, meta: TensorDict, task: Task, training: bool) -> tuple[Tensor, Tensor]:
        x = torch.cat([task.support_x, task.query_x])
        y = torch.cat([task.support_y, task.query_y])
        out = self._forward(meta, {}, self._encode(meta, x, training), None, training)
        return self.loss_fn(out, y), out

    def task_loss(self, task: Task, *, training: bool = True) -> TaskResult:
        """Plain supervised loss of the meta-parameters on the task's pooled data."""
        loss, out = self._pooled(named_params(self.model), task, training)
        n = task.support_x.shape[0]
        metrics = task_metrics(out[n:].detach(), task.query_y, self.loss_fn)
        return TaskResult(loss if training else loss.detach(), float(loss.detach()), metrics)

    def batched_meta_loss(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Mean pooled loss of tasks stacked on dim 0 (vmap)."""
        meta = named_params(self.model)

        def one(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> Tensor:
            return self._pooled(meta, Task(sx, sy, qx, qy), True)[0]

        losses = torch.func.vmap(one)(support_x, support_y, query_x, query_y)
        return losses.mean(), losses.mean().detach()


class Scratch(MAML):
    """A fresh network trained on the support set only (nothing is meta-learned).

    Each :meth:`adapt` starts from a new random initialisation (``reset_parameters`` of
    every layer of a copy of the model). :meth:`task_loss` returns a constant zero
    objective and reports the query loss after adaptation.

    Args:
        model: The network (its architecture is copied; its weights are not used).
        loss_fn: Task loss.
        finetune_lr: SGD rate.
        steps: Training steps on the support set.
        **options: Other :class:`~landcover.meta.maml.MAML` options.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        finetune_lr: float = 0.01,
        steps: int = 10,
        **options: Any,
    ) -> None:
        if options.get("adapt") is not None:
            raise ValueError("Scratch trains every parameter; remove the 'adapt' option")
        options.update(first_order=True, vmap=False, body_once=False)
        super().__init__(model, loss_fn, inner_lr=finetune_lr, steps=steps, **options)

    def _fresh(self) -> TensorDict:
        copy_ = copy.deepcopy(self.model)
        for module in copy_.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
        return {n: p.detach().requires_grad_() for n, p in copy_.named_parameters()}

    def _init_fast(self, meta: TensorDict) -> TensorDict:
        return self._fresh()

    def task_loss(self, task: Task, *, training: bool = True) -> TaskResult:
        """Zero objective (no meta-parameters); query loss of a network trained from scratch."""
        state = self.adapt(task.support_x, task.support_y)
        with torch.no_grad():
            out = self.predict(state, task.query_x)
            q_loss = float(self.loss_fn(out, task.query_y))
        zero = torch.zeros((), device=task.query_x.device)
        return TaskResult(zero, q_loss, task_metrics(out, task.query_y, self.loss_fn))

    def batched_meta_loss(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Zero objective; the mean query loss of per-task trained-from-scratch networks."""
        preds = self.batched_predict(support_x, support_y, query_x)
        q = torch.stack([self.loss_fn(p, y) for p, y in zip(preds, query_y)]).mean()
        return torch.zeros((), device=support_x.device), q.detach()

    def batched_predict(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, *, steps: int | None = None
    ) -> Tensor:
        """Task by task (each task has its own random initialisation)."""
        outs = []
        for sx, sy, qx in zip(support_x, support_y, query_x):
            state = self.adapt(sx, sy, steps=steps).detached()
            with torch.no_grad():
                outs.append(self.predict(state, qx))
        return torch.stack(outs)
