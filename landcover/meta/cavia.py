"""CAVIA: adapt only a context vector fed to the network; meta-learn the weights.

Zintgraf, Shiarlis, Kurin, Hofmann & Whiteson 2019, "Fast Context Adaptation via
Meta-Learning": each task starts from a zero context vector ``c`` that is concatenated to
the network's input; the inner loop adapts ``c`` only, the outer loop learns the network
weights through the adapted context (second order unless ``first_order``).

The model must accept ``in_features + context_dim`` inputs: for ``(n, d)`` inputs ``c`` is
appended to every row, for ``(n, C, H, W)`` images it is appended as ``context_dim``
constant channels. The adapted state carries the context in ``extras["context"]``.
Step-count rule: plain gradient steps on ``c``, any number works.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from landcover.meta.functional import TensorDict
from landcover.meta.maml import MAML
from landcover.meta.protocol import AdaptedState


def with_context(x: Tensor, context: Tensor) -> Tensor:
    """Concatenate ``context`` (``(d,)``) to every row / pixel of ``x``."""
    if x.ndim == 2:
        return torch.cat([x, context.expand(x.shape[0], -1)], dim=1)
    shape = (x.shape[0], context.shape[0], *x.shape[2:])
    view = context.view(1, -1, *([1] * (x.ndim - 2)))
    return torch.cat([x, view.expand(shape)], dim=1)


class CAVIA(MAML):
    """Context adaptation: the inner loop changes ``context_dim`` numbers per task.

    Args:
        model: The network; its input has ``context_dim`` extra features / channels.
        loss_fn: Task loss.
        context_dim: Size of the context vector (the paper uses 5 for regression).
        inner_lr: Inner step size on the context (the paper uses 1.0 for regression).
        **options: Other :class:`~landcover.meta.maml.MAML` options (``adapt`` and
            ``body_once`` do not apply).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        context_dim: int = 5,
        inner_lr: float = 1.0,
        **options: Any,
    ) -> None:
        for key in ("adapt", "body_once"):
            if key in options:
                raise ValueError(f"CAVIA adapts only its context vector; remove the {key!r} option")
        if int(context_dim) < 1:
            raise ValueError(f"context_dim must be >= 1; got {context_dim}")
        super().__init__(model, loss_fn, inner_lr=inner_lr, body_once=False, **options)
        self.context_dim = int(context_dim)
        self.adapt_names = []

    def _init_fast(self, meta: TensorDict) -> TensorDict:
        ref = next(iter(meta.values()))
        return {"context": ref.new_zeros(self.context_dim)}

    def _forward(
        self, meta: TensorDict, fast: TensorDict, inputs: Any, step: int | None, training: bool
    ) -> Tensor:
        context = fast["context"] if "context" in fast else self._init_fast(meta)["context"]
        return super()._forward(meta, {}, with_context(inputs, context), step, training)

    def _to_state(self, fast: TensorDict, steps: int) -> AdaptedState:
        return AdaptedState(extras={"context": fast["context"]}, step=steps)

    def _from_state(self, state: AdaptedState) -> TensorDict:
        if "context" not in state.extras:
            raise ValueError("this state has no 'context'; adapt it with a CAVIA learner")
        return {"context": state.extras["context"]}
