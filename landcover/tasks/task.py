"""The episode every learner consumes: a support set to adapt on and a query set to score."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class Task:
    """One few-shot episode.

    Shapes are free per family: regression uses ``(n, d)`` inputs and ``(n, 1)`` targets,
    classification ``(n, C, H, W)`` images and ``(n,)`` labels, segmentation ``(n, C, H, W)``
    images and ``(n, H, W)`` masks (with an ignore index for unlabeled pixels).

    Attributes:
        support_x: Inputs of the support set (what the learner adapts on).
        support_y: Targets of the support set.
        query_x: Inputs of the query set (what the adapted learner is scored on).
        query_y: Targets of the query set.
        meta: Free-form metadata (region name, class ids, seed) for logging and reports.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Task:
        """Return a copy on ``device``; floating inputs are cast to ``dtype`` when given."""

        def move(t: Tensor) -> Tensor:
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device=device)

        return Task(
            move(self.support_x),
            move(self.support_y),
            move(self.query_x),
            move(self.query_y),
            dict(self.meta),
        )
