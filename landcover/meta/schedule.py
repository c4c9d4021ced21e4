"""MAML++ schedules: multi-step loss weights and cosine annealing of the outer rate.

Antoniou, Edwards & Storkey 2019, "How to train your MAML", section 4:

* multi-step loss (MSL): the meta-objective is a weighted sum of the query losses after
  every inner step; the weights start uniform and are annealed towards the last step
  over the first ``msl_epochs`` epochs (the schedule of the authors' code: non-final
  weights decay linearly to ``0.03 / N``, the final one grows accordingly); afterwards
  only the last step counts;
* cosine annealing of the meta-optimizer's learning rate (Loshchilov & Hutter 2017).
"""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR


def msl_weights(steps: int, epoch: int, msl_epochs: int = 10) -> list[float] | None:
    """Per-step query-loss weights at ``epoch`` (``None`` once annealing is over).

    Args:
        steps: Number of inner steps ``N``.
        epoch: Current meta-epoch (0-based).
        msl_epochs: Epochs over which the weights are annealed.

    Returns:
        ``N`` weights summing to one, or ``None`` (use the last step's loss only).
    """
    if steps <= 0:
        return None
    if epoch >= msl_epochs or steps == 1:
        return None
    decay = 1.0 / steps / msl_epochs
    floor = 0.03 / steps
    weights = [max(1.0 / steps - epoch * decay, floor) for _ in range(steps - 1)]
    weights.append(min(1.0 / steps + epoch * (steps - 1) * decay, 1.0 - (steps - 1) * floor))
    return weights


def cosine_outer_lr(optimizer: Optimizer, total: int, min_lr: float = 1e-5) -> CosineAnnealingLR:
    """Cosine-annealing scheduler over ``total`` scheduler steps (epochs or iterations).

    Usable with any torch optimizer (call ``scheduler.step()`` once per unit of ``total``).
    """
    if int(total) < 1:
        raise ValueError(f"total must be >= 1 scheduler step; got {total}")
    return CosineAnnealingLR(optimizer, T_max=int(total), eta_min=float(min_lr))


def lightning_scheduler(
    optimizer: Optimizer, total: int, min_lr: float = 1e-5, interval: str = "epoch"
) -> dict[str, Any]:
    """The same schedule as a Lightning ``lr_scheduler`` config dict.

    Return ``{"optimizer": optimizer, "lr_scheduler": lightning_scheduler(...)}`` from
    ``configure_optimizers``; ``interval`` is ``"epoch"`` or ``"step"``.
    """
    if interval not in ("epoch", "step"):
        raise ValueError(f"interval must be 'epoch' or 'step'; got {interval!r}")
    return {"scheduler": cosine_outer_lr(optimizer, total, min_lr), "interval": interval}
