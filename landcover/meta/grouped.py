"""Task-batched forward passes: the tasks of a meta-batch through one network call.

Every task of a meta-batch has its own fast weights, so a plain forward pass cannot run
them together. :class:`TaskBatch` is a :class:`torch.overrides.TorchFunctionMode` under
which a network built of the usual layers runs ``T`` tasks at once, exactly:

* inputs are *task-folded*: ``T * B`` samples, task ``t`` in rows ``t*B .. t*B+B-1``;
* *task-batched* tensors (registered by identity) carry a leading task dimension
  ``[T, *shape]``: the per-task fast weights;
* convolutions and transposed convolutions with task-batched weights become one grouped
  convolution (the tasks as groups; the grouped-weight form of "batched per-task weights"
  used by learn2learn-style batched MAML and by functorch's own batching rule for
  ``conv2d``), linear layers one batched matmul;
* BatchNorm always normalises each task with its own batch statistics (never across
  tasks), with shared or per-task affine parameters; running statistics are not updated in
  the forward pass but logged, and :meth:`TaskBatch.fold_running_stats` folds them in the
  order the task-by-task loop would (task after task), so the buffers end equal too;
* GroupNorm and LayerNorm are per sample already; task-batched affine parameters are
  applied per task;
* every other operation (ReLU, pooling, interpolation, concatenation, losses) is per
  sample and runs unchanged on the folded batch; an operation this mode does not know
  that receives a task-batched tensor raises instead of silently mixing tasks.

Gradients of the sum of the per-task losses with respect to the task-batched weights are
the per-task gradients, so the inner loop of MAML (Finn et al. 2017) runs for all tasks in
one forward and one backward per step, second order included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

_CONV = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3, torch.conv1d: 1, torch.conv2d: 2, torch.conv3d: 3}
_CONV_T = {F.conv_transpose1d: 1, F.conv_transpose2d: 2, F.conv_transpose3d: 3}
#: Functions that may see a task-batched tensor without computing with it.
_HARMLESS = {"__get__", "dim", "size", "numel", "requires_grad_", "__len__", "__hash__"}


@dataclass
class _StatsRecord:
    """Per-task batch statistics of one training-mode BatchNorm call."""

    running_mean: Tensor
    running_var: Tensor
    momentum: float
    mean: Tensor  # [T, C]
    var: Tensor  # [T, C], unbiased


class TaskBatch(TorchFunctionMode):
    """Run a network on ``tasks`` task-folded samples with per-task weights.

    Args:
        tasks: Number of tasks ``T`` folded into the batch dimension.
        batched: Tensors with a leading task dimension (matched by identity).
        log: Shared list that collects BatchNorm statistics for
            :meth:`fold_running_stats` (a fresh one when ``None``).
    """

    def __init__(
        self, tasks: int, batched: Iterable[Tensor] = (), log: list[_StatsRecord] | None = None
    ) -> None:
        super().__init__()
        self.tasks = int(tasks)
        self.batched = {id(t) for t in batched}
        self.log: list[_StatsRecord] = [] if log is None else log

    # ----------------------------------------------------------------- helpers
    def _is_b(self, t: Any) -> bool:
        return isinstance(t, Tensor) and id(t) in self.batched

    def _to_groups(self, x: Tensor) -> Tensor:
        """``[T*B, C, *S]`` -> ``[B, T*C, *S]`` (tasks as channel groups)."""
        return x.unflatten(0, (self.tasks, -1)).transpose(0, 1).flatten(1, 2)

    def _from_groups(self, y: Tensor) -> Tensor:
        """``[B, T*C, *S]`` -> ``[T*B, C, *S]``."""
        return y.unflatten(1, (self.tasks, -1)).transpose(0, 1).flatten(0, 1)

    def _per_task(self, y: Tensor, v: Tensor, op: str) -> Tensor:
        """Apply a task-batched channel vector ``v [T, C]`` to ``y [T*B, C, *S]``."""
        t = self.tasks
        shape = (t, 1, v.shape[1]) + (1,) * (y.dim() - 2)
        yy = y.unflatten(0, (t, -1))
        out = yy * v.reshape(shape) if op == "mul" else yy + v.reshape(shape)
        return out.flatten(0, 1)

    def _channels(self, v: Tensor | None, channels: int) -> Tensor | None:
        """A shared ``[C]`` or task-batched ``[T, C]`` vector as ``[T*C]``."""
        if v is None:
            return None
        return v.reshape(-1) if self._is_b(v) else v.repeat(self.tasks)

    # ----------------------------------------------------------------- layers
    def _conv(self, func: Any, transposed: bool, args: tuple, kwargs: dict) -> Tensor:
        names = (
            ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")
            if transposed
            else ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
        )
        a = dict(zip(names, args))
        a.update(kwargs)
        x, w, b = a.pop("input"), a.pop("weight"), a.pop("bias", None)
        groups = int(a.pop("groups", 1))
        if not self._is_b(w):
            y = func(x, w, None if self._is_b(b) else b, groups=groups, **a)
            return self._per_task(y, b, "add") if self._is_b(b) else y
        t = self.tasks
        w2 = w.flatten(0, 1)
        b2 = b.reshape(-1) if b is not None and self._is_b(b) else None
        if b is not None and b2 is None:
            b2 = b.repeat(t)
        y = func(self._to_groups(x), w2, b2, groups=groups * t, **a)
        return self._from_groups(y)

    def _linear(self, args: tuple, kwargs: dict) -> Tensor:
        a = dict(zip(("input", "weight", "bias"), args))
        a.update(kwargs)
        x, w, b = a["input"], a["weight"], a.get("bias")
        t = self.tasks
        if not self._is_b(w):
            y = F.linear(x, w, None if self._is_b(b) else b)
        else:
            xs = x.unflatten(0, (t, -1))
            y = torch.matmul(xs.flatten(1, -2), w.transpose(1, 2)).reshape(
                *xs.shape[:-1], w.shape[1]
            )
            if b is not None and not self._is_b(b):
                y = y + b
            y = y.flatten(0, 1)
        if self._is_b(b):
            shape = (t, 1) + (1,) * (y.dim() - 2) + (b.shape[-1],)
            y = (y.unflatten(0, (t, -1)) + b.reshape(shape)).flatten(0, 1)
        return y

    def _batch_norm(self, args: tuple, kwargs: dict) -> Tensor:
        names = ("input", "running_mean", "running_var", "weight", "bias", "training")
        names += ("momentum", "eps")
        a = {"weight": None, "bias": None, "training": False, "momentum": 0.1, "eps": 1e-5}
        a.update(dict(zip(names, args)))
        a.update(kwargs)
        x, rm, rv = a["input"], a["running_mean"], a["running_var"]
        c = x.shape[1]
        xg = self._to_groups(x)
        weight, bias = self._channels(a["weight"], c), self._channels(a["bias"], c)
        if a["training"] or rm is None:
            y = F.batch_norm(xg, None, None, weight, bias, True, 0.0, a["eps"])
            if a["training"] and rm is not None:
                if a["momentum"] is None:
                    raise ValueError(
                        "task_batch='grouped' needs BatchNorm layers with a numeric momentum "
                        "(momentum=None, the cumulative average, is not supported); use the loop"
                    )
                with torch.no_grad():
                    dims = [0, *range(2, xg.dim())]
                    mean = xg.mean(dim=dims).view(self.tasks, c)
                    var = xg.var(dim=dims, unbiased=True).view(self.tasks, c)
                self.log.append(_StatsRecord(rm, rv, float(a["momentum"]), mean, var))
        else:
            y = F.batch_norm(
                xg, rm.repeat(self.tasks), rv.repeat(self.tasks), weight, bias, False, 0.0, a["eps"]
            )
        return self._from_groups(y)

    def _affine_norm(self, func: Any, args: tuple, kwargs: dict, names: tuple) -> Tensor:
        a = dict(zip(names, args))
        a.update(kwargs)
        w, b = a.get("weight"), a.get("bias")
        if not (self._is_b(w) or self._is_b(b)):
            return func(*args, **kwargs)
        a["weight"], a["bias"] = None, None
        y = func(**a)
        if w is not None:
            y = self._per_task(y, w.flatten(1), "mul") if self._is_b(w) else y * _bcast(w, y)
        if b is not None:
            y = self._per_task(y, b.flatten(1), "add") if self._is_b(b) else y + _bcast(b, y)
        return y

    def _layer_norm(self, args: tuple, kwargs: dict) -> Tensor:
        a = dict(zip(("input", "normalized_shape", "weight", "bias", "eps"), args))
        a.update(kwargs)
        w, b = a.get("weight"), a.get("bias")
        if not (self._is_b(w) or self._is_b(b)):
            return F.layer_norm(**a)
        a["weight"], a["bias"] = None, None
        y = F.layer_norm(**a)
        t, k = self.tasks, len(tuple(a["normalized_shape"]))
        yy = y.unflatten(0, (t, -1))
        mid = (1,) * (yy.dim() - 1 - k)
        for v, op in ((w, "mul"), (b, "add")):
            if v is None:
                continue
            vv = v.reshape((t, *mid, *v.shape[1:])) if self._is_b(v) else v
            yy = yy * vv if op == "mul" else yy + vv
        return yy.flatten(0, 1)

    # ----------------------------------------------------------------- dispatch
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _CONV:
            return self._conv(func, False, args, kwargs)
        if func in _CONV_T:
            return self._conv(func, True, args, kwargs)
        if func is F.linear:
            return self._linear(args, kwargs)
        if func is F.batch_norm:
            return self._batch_norm(args, kwargs)
        if func is F.group_norm:
            return self._affine_norm(
                func, args, kwargs, ("input", "num_groups", "weight", "bias", "eps")
            )
        if func is F.layer_norm:
            return self._layer_norm(args, kwargs)
        if self.batched and getattr(func, "__name__", "") not in _HARMLESS:
            flat = list(args) + list(kwargs.values())
            flat += [v for x in flat if isinstance(x, (list, tuple)) for v in x]
            if any(self._is_b(v) for v in flat):
                raise NotImplementedError(
                    f"task_batch='grouped' cannot run {getattr(func, '__name__', func)!r} on a "
                    "task's fast weights (supported: conv, transposed conv, linear, batch/group/"
                    "layer norm); use task_batch='loop' for this model"
                )
        return func(*args, **kwargs)

    # ----------------------------------------------------------------- running statistics
    def fold_running_stats(self) -> None:
        """Fold the logged batch statistics into the running buffers, task after task.

        Reproduces the loop's order: all forwards of task 0 (in call order), then task 1...
        """
        fold_running_stats([(self.log, t) for t in range(self.tasks)])
        self.log.clear()


def fold_running_stats(order: list[tuple[list[_StatsRecord], int]]) -> None:
    """Replay logged BatchNorm statistics in the loop's order.

    For each ``(log, task position)`` in ``order``, every call of that log (in call order)
    updates its buffers with that task's statistics (``r <- (1 - m) r + m s``, as a
    training-mode BatchNorm forward does).
    """
    with torch.no_grad():
        for log, t in order:
            for rec in log:
                m = rec.momentum
                rec.running_mean.mul_(1 - m).add_(rec.mean[t].to(rec.running_mean), alpha=m)
                rec.running_var.mul_(1 - m).add_(rec.var[t].to(rec.running_var), alpha=m)


def _bcast(v: Tensor, y: Tensor) -> Tensor:
    """Shape a per-channel vector for broadcasting against ``y [N, C, *S]``."""
    if v.dim() == 1 and y.dim() > 2:
        return v.reshape((1, -1) + (1,) * (y.dim() - 2))
    return v
