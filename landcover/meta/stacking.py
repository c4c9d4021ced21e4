"""Helpers shared by learners: stacking a meta-batch for ``vmap`` and per-task metrics."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from landcover.tasks.task import Task


def stack_tasks(
    tasks: Sequence[Task], *, mode: str = "vmap"
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Stack the tasks of a meta-batch on a new leading dimension.

    Args:
        tasks: The meta-batch.
        mode: The option that asked for stacking, named in errors (``"vmap"`` or
            ``"task_batch"``).

    Raises:
        ValueError: Empty batch, or tasks whose tensors differ in shape.
    """
    if not tasks:
        raise ValueError("cannot stack an empty meta-batch; pass at least one task")
    fields = ("support_x", "support_y", "query_x", "query_y")
    out = []
    for f in fields:
        shapes = {tuple(getattr(t, f).shape) for t in tasks}
        if len(shapes) > 1:
            raise ValueError(
                f"{mode} over tasks needs equal shapes, but {f} has shapes {sorted(shapes)}; "
                f"sample tasks with equal sizes or use {mode}="
                f"{'False' if mode == 'vmap' else chr(39) + 'loop' + chr(39)}"
            )
        out.append(torch.stack([getattr(t, f) for t in tasks]))
    return out[0], out[1], out[2], out[3]


def ignore_index_of(loss_fn: nn.Module) -> int | None:
    """The ignore index of a classification loss (``None`` when it has none)."""
    value = getattr(loss_fn, "ignore_index", None)
    return int(value) if value is not None else None


def task_metrics(output: Tensor, target: Tensor, loss_fn: nn.Module) -> dict[str, float]:
    """Detached per-task metrics of one task's query output.

    Accuracy for integer targets (pixels with the loss's ignore index skipped); nothing
    for regression.
    """
    if target.is_floating_point() or output.ndim != target.ndim + 1:
        return {}
    pred = output.argmax(dim=1)
    valid = torch.ones_like(target, dtype=torch.bool)
    ignore = ignore_index_of(loss_fn)
    if ignore is not None:
        valid = target != ignore
    count = int(valid.sum())
    if count == 0:
        return {}
    return {"accuracy": float(((pred == target) & valid).sum()) / count}
