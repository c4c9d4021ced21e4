"""ANIL: adapt only a named subset of the parameters (by default the head).

Raghu, Raghu, Bengio & Vinyals 2020, "Rapid Learning or Feature Reuse? Towards
Understanding the Effectiveness of MAML": MAML's inner loop mostly changes the last layer,
so adapting only the head ("Almost No Inner Loop") is as good and much cheaper. Here the
subset is any list of names, dotted prefixes or globs (``adapt=["head"]`` for the
segmentation models' decoder + classifier, ``["head.classifier"]`` for the 1x1 classifier
only, ``["4"]`` for the last layer of an ``nn.Sequential`` MLP).

When only ``head.*`` adapts and the model has ``body`` / ``head`` submodules
(``forward(x) == head(body(x))``), the body runs once per task and only the head runs in
the inner loop ("body-once" mode); the body is still meta-learned through the query loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from landcover.meta.maml import MAML


def default_subset(model: nn.Module) -> list[str]:
    """``["head"]`` for body/head models, else the parameters of the last child module."""
    if isinstance(getattr(model, "head", None), nn.Module):
        return ["head"]
    children = [n for n, m in model.named_children() if any(True for _ in m.parameters())]
    if not children:
        raise ValueError(
            "ANIL cannot pick a default subset: the model has no child module with "
            "parameters; pass adapt=[...] with parameter names"
        )
    return [children[-1]]


class ANIL(MAML):
    """MAML whose inner loop adapts only ``adapt`` (default: the model's head).

    Args:
        model: The network.
        loss_fn: Task loss.
        adapt: Names / prefixes / globs of adapted parameters (``None``: the head, or the
            last child module with parameters).
        **options: Other :class:`~landcover.meta.maml.MAML` options.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        adapt: Sequence[str] | str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            model, loss_fn, adapt=default_subset(model) if adapt is None else adapt, **options
        )
