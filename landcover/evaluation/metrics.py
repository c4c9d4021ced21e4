"""Segmentation scores (mIoU, overall accuracy, Cohen's kappa) and confidence intervals.

The scores are torchmetrics' multiclass Jaccard index (macro average over the classes
present in the prediction or the truth), micro-averaged accuracy and Cohen's kappa
(Cohen 1960, "A coefficient of agreement for nominal scales"), all with an ignore index for
unlabeled pixels. Few-shot results are reported as a mean over tasks with a Student-t 95%
interval; two methods scored on the same tasks are compared by the interval of their paired
differences, which removes the task-to-task variance both share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCohenKappa,
    MulticlassJaccardIndex,
)

from landcover.tasks.scoring import SCORE_NAMES, logits_to_classes, segmentation_scores

__all__ = [
    "SCORE_NAMES",
    "Interval",
    "logits_to_classes",
    "mean_interval",
    "paired_difference",
    "segmentation_metric_collection",
    "segmentation_scores",
]


def segmentation_metric_collection(
    num_classes: int, ignore_index: int | None = 255, prefix: str = ""
) -> MetricCollection:
    """The same three scores as a stateful torchmetrics collection (for Lightning logging).

    Args:
        num_classes: Number of classes.
        ignore_index: Value of unlabeled pixels.
        prefix: Prefix of the logged names (e.g. ``"val/after_"``).

    Returns:
        A ``MetricCollection`` with keys ``miou``, ``accuracy`` and ``kappa`` (plus prefix).
    """
    args = {"num_classes": num_classes, "ignore_index": ignore_index}
    return MetricCollection(
        {
            "miou": MulticlassJaccardIndex(average="macro", **args),
            "accuracy": MulticlassAccuracy(average="micro", **args),
            "kappa": MulticlassCohenKappa(**args),
        },
        prefix=prefix,
    )


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided confidence interval.

    Attributes:
        mean: Sample mean.
        low: Lower end of the interval.
        high: Upper end of the interval.
        n: Number of samples.
    """

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        """Half the width of the interval (the ``±`` of a report)."""
        return (self.high - self.low) / 2

    def as_dict(self) -> dict[str, float | int]:
        """JSON-friendly form."""
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.half_width:.3f}"


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and Student-t confidence interval of independent samples.

    Non-finite values (tasks where every pixel was ignored) are dropped.

    Args:
        values: Per-task scores.
        confidence: Coverage of the interval.

    Returns:
        The interval; with a single sample its width is zero, with none the mean is ``nan``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    x = [float(v) for v in values if math.isfinite(float(v))]
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = sum(x) / n
    if n == 1:
        return Interval(mean, mean, mean, 1)
    var = sum((v - mean) ** 2 for v in x) / (n - 1)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * math.sqrt(var / n)
    return Interval(mean, mean - half, mean + half, n)


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Interval:
    """Interval of the mean of ``a - b`` over the same tasks (a paired comparison).

    Args:
        a: Scores of method A, one per task.
        b: Scores of method B on the same tasks, in the same order.
        confidence: Coverage of the interval.

    Returns:
        The interval of the mean difference; it excludes zero when the difference is real.
    """
    if len(a) != len(b):
        raise ValueError(
            f"a paired comparison needs the same tasks for both methods; got {len(a)} and "
            f"{len(b)} scores"
        )
    return mean_interval([float(x) - float(y) for x, y in zip(a, b)], confidence)
