"""MAML++: MAML with the stabilising switches of "How to train your MAML".

Antoniou, Edwards & Storkey 2019. Each switch works alone; the defaults are the paper's:

* ``multi_step_loss``: weighted sum of the query losses after every inner step, weights
  annealed towards the last step over ``msl_epochs`` epochs (see
  :func:`landcover.meta.schedule.msl_weights`);
* ``first_order_epochs``: derivative-order annealing, first order for the first ``E``
  meta-epochs then second order (the paper: 50 of 150 epochs);
* ``lslr``: learned per-layer (per parameter tensor), per-step inner rates;
* ``bn="per_step"`` (the default for models with BatchNorm) with ``per_step_affine``:
  per-step running statistics and affine parameters (see
  :mod:`landcover.meta.batchnorm`);
* cosine annealing of the outer rate: :func:`landcover.meta.schedule.cosine_outer_lr`
  or :func:`~landcover.meta.schedule.lightning_scheduler` on the meta-optimizer.

:meth:`MAMLPlusPlus.on_epoch_start` drives the annealing. Step-count rule: with more
inner steps than trained, the extra steps reuse the last trained step's LSLR rate and
BatchNorm entry; the final forward always uses the final BatchNorm entry.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from landcover.meta.functional import safe_key
from landcover.meta.maml import MAML
from landcover.meta.schedule import msl_weights


class MAMLPlusPlus(MAML):
    """MAML++.

    Args:
        model: The network.
        loss_fn: Task loss.
        inner_lr: Inner rate (initial value of the LSLR rates).
        steps: Trained inner steps (the paper: 5).
        multi_step_loss: Use the annealed multi-step loss.
        msl_epochs: Epochs over which the multi-step weights are annealed.
        first_order_epochs: Meta-epochs trained first order before switching to second.
        lslr: Learn one inner rate per parameter tensor and step.
        **options: Other :class:`~landcover.meta.maml.MAML` options (``bn`` defaults to
            ``"per_step"`` for models with BatchNorm).
    """

    default_bn = "per_step"

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        inner_lr: float = 0.01,
        steps: int = 5,
        multi_step_loss: bool = True,
        msl_epochs: int = 10,
        first_order_epochs: int = 50,
        lslr: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(model, loss_fn, inner_lr=inner_lr, steps=steps, **options)
        self.multi_step_loss = bool(multi_step_loss)
        self.msl_epochs = int(msl_epochs)
        self.first_order_epochs = int(first_order_epochs)
        self.epoch = 0
        self.lslr = nn.ParameterDict()
        if lslr and self.default_steps > 0:
            params = dict(model.named_parameters())
            for n in self.adapt_names:
                like = params[n].detach()
                self.lslr[safe_key(n)] = nn.Parameter(
                    torch.full(
                        (self.default_steps,), self.inner_lr, dtype=like.dtype, device=like.device
                    )
                )

    def on_epoch_start(self, epoch: int) -> None:
        """Set the meta-epoch that drives the MSL and derivative-order annealing."""
        self.epoch = int(epoch)

    def _first_order_now(self) -> bool:
        return self.first_order or self.epoch < self.first_order_epochs

    def _step_weights(self, steps: int) -> list[float] | None:
        if not self.multi_step_loss:
            return None
        return msl_weights(steps, self.epoch, self.msl_epochs)

    def _rate(self, name: str, step: int) -> Tensor | float:
        key = safe_key(name)
        if key not in self.lslr:
            return self.inner_lr
        rates = self.lslr[key]
        return rates[min(step, rates.shape[0] - 1)]
