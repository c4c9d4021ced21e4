"""Meta-SGD: learned per-parameter inner learning rates.

Li, Zhou, Chen & Li 2017, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning":
the inner step is ``phi = theta - alpha * grad L_s(theta)`` with ``alpha`` a tensor of the
same shape as ``theta`` (element-wise product), meta-learned together with ``theta``.
The rates are parameters of the learner (``learner.rates``), so they are in
``learner.parameters()`` and in ``learner.state_dict()``.

Step-count rule: the learned rates serve the trained number of steps ``N``; with
``extra_steps="base"`` (default) any further step is a plain SGD step at ``inner_lr``, with
``extra_steps="learned"`` the learned rates keep being applied. Rates meta-learned for a
single step are large (one jump to the task solution) and repeating them diverges on the
sinusoid benchmark, hence the safe default.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from landcover.meta.functional import safe_key
from landcover.meta.maml import MAML


class MetaSGD(MAML):
    """MAML with a learned rate per adapted parameter element.

    Args:
        model: The network.
        loss_fn: Task loss.
        inner_lr: Initial value of every rate, and the rate of steps beyond the trained
            number with ``extra_steps="base"``.
        extra_steps: ``"base"`` or ``"learned"`` (see the module docstring).
        **options: Other :class:`~landcover.meta.maml.MAML` options.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        inner_lr: float = 0.01,
        extra_steps: str = "base",
        **options: Any,
    ) -> None:
        if extra_steps not in ("base", "learned"):
            raise ValueError(f"extra_steps must be 'base' or 'learned'; got {extra_steps!r}")
        super().__init__(model, loss_fn, inner_lr=inner_lr, **options)
        self.extra_steps = extra_steps
        params = dict(model.named_parameters())
        self.rates = nn.ParameterDict(
            {
                safe_key(n): nn.Parameter(torch.full_like(params[n].detach(), self.inner_lr))
                for n in self.adapt_names
            }
        )

    def _rate(self, name: str, step: int) -> Tensor | float:
        if step >= self.default_steps and self.extra_steps == "base":
            return self.inner_lr
        return self.rates[safe_key(name)]
