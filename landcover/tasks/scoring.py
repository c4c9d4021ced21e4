"""Scoring a learner on one task: adapt on the support, predict the query, score the maps.

The scores (mIoU, overall accuracy, Cohen's kappa; Cohen 1960, "A coefficient of agreement
for nominal scales") are torchmetrics' multiclass Jaccard index (macro over the classes
present in the prediction or the truth), micro accuracy and kappa, with an ignore index for
unlabeled pixels. This module sits below both ``landcover.training`` (validation during
meta-training) and ``landcover.evaluation`` (few-shot reports), so training never imports
the evaluation layer; :mod:`landcover.evaluation.metrics` re-exports the scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_cohen_kappa,
    multiclass_jaccard_index,
)

from landcover.meta.protocol import AdaptedState, Learner
from landcover.tasks.task import Task

#: Names of the scores, in report order.
SCORE_NAMES: tuple[str, ...] = ("miou", "accuracy", "kappa")


def _check(preds: Tensor, target: Tensor, num_classes: int) -> None:
    if preds.shape != target.shape:
        raise ValueError(
            f"predicted classes {tuple(preds.shape)} and truth {tuple(target.shape)} differ in "
            "shape; pass class indices (argmax of the logits), not logits"
        )
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2; got {num_classes}")


def segmentation_scores(
    preds: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = 255
) -> dict[str, float]:
    """Score predicted class maps against the truth.

    Args:
        preds: Predicted class indices, any shape (e.g. ``(n, H, W)``).
        target: True class indices, same shape; pixels equal to ``ignore_index`` are skipped.
        num_classes: Number of classes.
        ignore_index: Value of unlabeled pixels in ``target`` (``None``: none).

    Returns:
        ``{"miou", "accuracy", "kappa"}``; ``nan`` for all three when every pixel is ignored.
    """
    _check(preds, target, num_classes)
    preds = preds.reshape(-1).long()
    target = target.reshape(-1).long()
    if ignore_index is not None:
        keep = target != ignore_index
        preds, target = preds[keep], target[keep]
    if target.numel() == 0:
        return {name: math.nan for name in SCORE_NAMES}
    args = {"num_classes": num_classes, "validate_args": False}
    return {
        "miou": float(multiclass_jaccard_index(preds, target, average="macro", **args)),
        "accuracy": float(multiclass_accuracy(preds, target, average="micro", **args)),
        "kappa": float(multiclass_cohen_kappa(preds, target, **args)),
    }


def logits_to_classes(logits: Tensor) -> Tensor:
    """Class indices from ``(n, C, H, W)`` logits (argmax over the class axis)."""
    if logits.ndim < 2:
        raise ValueError(f"logits need a class axis at dim 1; got shape {tuple(logits.shape)}")
    return torch.argmax(logits, dim=1)


def adapt_and_predict(
    learner: Learner,
    task: Task,
    steps: int | None,
    *,
    chunk: int = 16,
    adapt_options: Mapping[str, Any] | None = None,
) -> tuple[Tensor, AdaptedState]:
    """Adapt a learner on a task's support set and predict its query set.

    Adaptation needs gradients even at evaluation time, so it runs under
    ``torch.enable_grad`` (Lightning validates under ``no_grad``); prediction runs without
    them, in chunks of ``chunk`` tiles.

    Args:
        learner: The learner.
        task: The task (support used for adaptation, query predicted).
        steps: Inner steps (``0``: no adaptation; ``None``: the learner's default).
        chunk: Query tiles per forward pass.
        adapt_options: Further keyword arguments of ``learner.adapt``.

    Returns:
        ``(query logits (n, C, H, W), adapted state)``.
    """
    with torch.enable_grad():
        state = learner.adapt(
            task.support_x, task.support_y, steps=steps, **(adapt_options or {})
        ).detached()
    outs = []
    with torch.no_grad():
        for i in range(0, task.query_x.shape[0], chunk):
            outs.append(learner.predict(state, task.query_x[i : i + chunk]))
    return torch.cat(outs), state


def score_task(
    learner: Learner,
    task: Task,
    steps: int | None,
    num_classes: int,
    ignore_index: int = 255,
    *,
    adapt_options: Mapping[str, Any] | None = None,
) -> tuple[dict[str, float], Tensor]:
    """Scores of one method on one task, and its predicted query class maps.

    ``adapt_options``: further keyword arguments of ``learner.adapt``.
    """
    logits, _ = adapt_and_predict(learner, task, steps, adapt_options=adapt_options)
    classes = logits_to_classes(logits)
    return segmentation_scores(classes, task.query_y, num_classes, ignore_index), classes
