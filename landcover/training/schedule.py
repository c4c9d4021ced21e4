"""The outer rate's cosine schedule over the budget a run actually has: steps or time.

MAML++ (Antoniou et al. 2019, "How to train your MAML", section 4) anneals the outer rate
with a cosine from ``outer_lr`` to ``min_lr`` over the run. A run capped by time
(``--trainer.max_time``) has no step count to anneal over: with ``max_epochs`` raised to
make room for the time, a schedule over the epochs never got past its first percent (the
rate was still 0.00299 of 0.003 at step 609 of a 10-minute run). Here the schedule's
progress is the larger of the share of steps done and the share of the time budget used,
so it reaches ``min_lr`` when the first of the two budgets runs out.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import lightning as L
from lightning.pytorch.callbacks import Timer

__all__ = ["budget_cosine", "budget_progress"]


def budget_progress(trainer: L.Trainer, step: int, total_steps: float) -> float:
    """Share in ``[0, 1]`` of the run's budget used after ``step`` outer steps.

    Args:
        trainer: The trainer (its :class:`~lightning.pytorch.callbacks.Timer` holds the
            time budget of ``max_time``).
        step: Outer steps taken.
        total_steps: Steps the run may take (``inf`` when only time bounds it).
    """
    done = step / total_steps if math.isfinite(total_steps) and total_steps > 0 else 0.0
    timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
    remaining = timer.time_remaining("train") if timer is not None else None
    if remaining is not None:
        elapsed = timer.time_elapsed("train")  # type: ignore[union-attr]
        budget = elapsed + remaining
        if budget > 0:
            done = max(done, elapsed / budget)
    return min(max(done, 0.0), 1.0)


def budget_cosine(trainer: L.Trainer, floor: float) -> Callable[[int], float]:
    """A ``LambdaLR`` factor: cosine from 1 to ``floor`` over :func:`budget_progress`.

    Returned as a plain function (``LambdaLR`` then keeps the trainer out of checkpoints).
    """
    total = float(trainer.estimated_stepping_batches)

    def factor(step: int) -> float:
        p = budget_progress(trainer, step, total)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))

    return factor
