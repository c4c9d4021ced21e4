"""How the tasks of a meta-batch run: a loop, grouped per-task weights, or ``vmap``.

Mixed into :class:`landcover.meta.maml.MAML` (and so into every learner derived from it):

* ``"loop"``: :meth:`Learner.meta_backward`, one task at a time with one backward per
  task, so memory holds one task's graph.
* ``"grouped"``: :meth:`TaskBatching.grouped_meta_loss` folds the ``T`` tasks into the
  batch dimension and gives every adapted parameter a leading task dimension; each inner
  step is one forward and one (double-differentiable) backward for all tasks, the
  per-task weights running as grouped convolutions (:class:`landcover.meta.grouped.
  TaskBatch`). It is the same computation as the loop (Finn et al. 2017's MAML, with
  Antoniou et al. 2019's MAML++ switches: learned per-step rates, multi-step loss,
  per-step BatchNorm), so loss and gradients agree with the loop up to rounding, learned
  rates included, and per-step BatchNorm running statistics end equal. It needs tasks of
  equal shapes and a model made of convolutions, linear layers and batch/group/layer
  norms around per-sample operations.
* ``"vmap"``: :func:`torch.func.vmap` over the tasks (BatchNorm-free models).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor

from landcover.meta.functional import TensorDict, named_params
from landcover.meta.grouped import TaskBatch, fold_running_stats
from landcover.meta.stacking import stack_tasks, task_metrics
from landcover.tasks.task import Task

#: Values of the ``task_batch`` learner option.
TASK_BATCH_MODES: tuple[str, ...] = ("loop", "grouped", "vmap")

#: Hooks a learner must inherit unchanged from MAML to run ``task_batch="grouped"``.
_GROUPED_HOOKS = ("task_loss", "_objective", "_inner", "_init_fast", "_forward", "_encode")


class TaskBatching:
    """Task-batching behaviour of the MAML family (see the module docstring)."""

    #: Tasks folded into the batch while a grouped meta-loss runs (``None``: one task).
    _tasks: int | None = None
    #: BatchNorm statistics logged by the grouped forwards, folded afterwards.
    _bn_log: list | None = None
    #: The class whose hooks grouped batching was written for (MAML sets itself here, so
    #: this module needs no import of :mod:`landcover.meta.maml`).
    _grouped_reference: type | None = None

    # ----------------------------------------------------------------- grouped hooks
    def _check_grouped(self) -> None:
        """Refuse ``task_batch="grouped"`` for learners that change the MAML hooks."""
        ref = type(self)._grouped_reference
        if ref is None:
            raise TypeError(f"{type(self).__name__} mixes in TaskBatching without a MAML base")
        changed = [h for h in _GROUPED_HOOKS if getattr(type(self), h) is not getattr(ref, h)]
        if changed:
            raise ValueError(
                f"task_batch='grouped' is not available for {type(self).__name__}: it "
                f"overrides {changed}; use task_batch='loop'"
            )

    def _batch_fast(self, fast: TensorDict) -> TensorDict:
        """Give every fast tensor a leading task dimension when tasks are grouped."""
        if self._tasks is None:
            return fast
        t = self._tasks
        return {n: v.unsqueeze(0).expand(t, *v.shape) for n, v in fast.items()}

    def _losses(self, out: Tensor, target: Tensor) -> Tensor:
        """The loss (one task), or the vector of per-task losses (grouped)."""
        if self._tasks is None:
            return self.loss_fn(out, target)
        outs = out.unflatten(0, (self._tasks, -1))
        targets = target.unflatten(0, (self._tasks, -1))
        return torch.stack([self.loss_fn(o, y) for o, y in zip(outs, targets)])

    @contextmanager
    def _task_batch_mode(self, fast: TensorDict) -> Iterator[None]:
        """:class:`TaskBatch` over the fast tensors while tasks are grouped."""
        if self._tasks is None:
            with nullcontext():
                yield
            return
        with TaskBatch(self._tasks, fast.values(), self._bn_log):
            yield

    # ----------------------------------------------------------------- meta-batch
    def meta_backward(self, tasks: Sequence[Task]) -> dict[str, float]:
        """Mean meta-gradient into ``.grad``: per task, grouped or vmapped (``task_batch``)."""
        mode = getattr(self, "task_batch", "vmap" if getattr(self, "vmap", False) else "loop")
        if mode == "loop":
            return super().meta_backward(tasks)  # type: ignore[misc]
        if mode == "grouped":
            loss, stats = self.grouped_meta_loss(tasks)
            loss.backward()
            return stats
        loss, q_loss = self.batched_meta_loss(*stack_tasks(tasks))
        loss.backward()
        return {"query_loss": float(q_loss)}

    def grouped_meta_loss(
        self, tasks: Sequence[Task], *, training: bool = True
    ) -> tuple[Tensor, dict[str, float]]:
        """Mean meta-objective of ``tasks`` run together (``task_batch="grouped"``).

        Tasks of equal shapes run as one group (a meta-batch whose tasks differ in shots
        runs one group per shape); per-step BatchNorm statistics are folded in the tasks'
        order afterwards, as the loop would.

        Returns:
            ``(objective, stats)``: the objective's gradient is the mean meta-gradient of
            the loop; ``stats`` holds the mean query loss and mean metrics.

        Raises:
            ValueError: Empty meta-batch.
        """
        if not tasks:
            raise ValueError("grouped_meta_loss needs at least one task; got an empty meta-batch")
        groups: dict[tuple, list[int]] = {}
        for i, t in enumerate(tasks):
            key = tuple(tuple(getattr(t, f).shape) for f in ("support_x", "support_y"))
            key += tuple(tuple(getattr(t, f).shape) for f in ("query_x", "query_y"))
            groups.setdefault(key, []).append(i)
        n = len(tasks)
        total: Tensor | None = None
        stats: dict[str, float] = {}
        where: dict[int, tuple[list, int]] = {}
        for idx in groups.values():
            loss, q_loss, out, log = self._grouped_objective([tasks[i] for i in idx], training)
            total = loss.sum() / n if total is None else total + loss.sum() / n
            stats["query_loss"] = stats.get("query_loss", 0.0) + float(q_loss.detach().sum()) / n
            qy = torch.cat([tasks[i].query_y for i in idx])
            outs = out.detach().unflatten(0, (len(idx), -1))
            for pos, (o, y) in enumerate(zip(outs, qy.unflatten(0, (len(idx), -1)))):
                for k, v in task_metrics(o, y, self.loss_fn).items():  # type: ignore[attr-defined]
                    stats[k] = stats.get(k, 0.0) + v / n
                where[idx[pos]] = (log, pos)
        fold_running_stats([where[i] for i in range(n)])
        assert total is not None
        return total, stats

    def _grouped_objective(
        self, tasks: list[Task], training: bool
    ) -> tuple[Tensor, Tensor, Tensor, list]:
        """Per-task objectives, query losses, folded query outputs and the BN log."""
        sx, sy, qx, qy = (t.flatten(0, 1) for t in stack_tasks(tasks, mode="task_batch"))
        self._tasks, self._bn_log = len(tasks), []
        log = self._bn_log
        try:
            with torch.enable_grad():
                loss, q_loss, out = self._objective(  # type: ignore[attr-defined]
                    named_params(self.model),  # type: ignore[attr-defined]
                    Task(sx, sy, qx, qy),
                    training=training,
                    functional=False,
                )
        finally:
            self._tasks, self._bn_log = None, None
        return loss, q_loss, out, log

    # ----------------------------------------------------------------- vmap
    def batched_meta_loss(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Mean meta-objective and mean query loss of tasks stacked on dim 0 (vmap).

        Requires a BatchNorm-free model. Returns ``(objective, detached query loss)``.
        """
        meta = named_params(self.model)  # type: ignore[attr-defined]

        def one(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> tuple[Tensor, Tensor]:
            loss, q_loss, _ = self._objective(  # type: ignore[attr-defined]
                meta, Task(sx, sy, qx, qy), training=True, functional=True
            )
            return loss, q_loss

        losses, q_losses = torch.func.vmap(one)(support_x, support_y, query_x, query_y)
        return losses.mean(), q_losses.mean().detach()

    def batched_predict(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, *, steps: int | None = None
    ) -> Tensor:
        """Adapt to each of a stack of tasks and predict its ``query_x`` (no meta-graph).

        Uses :func:`torch.func.vmap` for BatchNorm-free models, a loop otherwise.
        """
        me: Any = self
        steps = me.default_steps if steps is None else int(steps)
        if me.bn.policy != "none":
            outs = []
            for sx, sy, qx in zip(support_x, support_y, query_x):
                outs.append(me.predict(me.adapt(sx, sy, steps=steps).detached(), qx).detach())
            return torch.stack(outs)
        meta = named_params(me.model, detach=True)

        def one(sx: Tensor, sy: Tensor, qx: Tensor) -> Tensor:
            fast = me._fast_weights(meta, sx, sy, training=False, steps=steps, functional=True)
            return me._forward(meta, fast, me._encode(meta, qx, False), None, False)

        return torch.func.vmap(one)(support_x, support_y, query_x).detach()
