"""Adaptation that never leaves a map worse than no adaptation: steps chosen on held-out support.

Test-time adaptation can hurt: too many inner steps overfit a few tiles, and learned
per-step rates (Meta-SGD, Li et al. 2017; MAML++'s LSLR, Antoniou et al. 2019) run past the
number of steps they were trained for can diverge. The guard is early stopping on a
validation split of the support set itself (Prechelt 1998, "Early stopping — but when?";
used for fine-tuning in few-shot segmentation by e.g. Rußwurm et al. 2020):

1. Split the support crops into a *fit* part and a *held-out* part: whole tiles when there
   are two or more (a quarter of them, at least one), else a random quarter of 8×8-pixel
   blocks of the one tile (their pixels leave the fit masks and form the held-out masks).
2. Adapt on the fit part with each candidate step count (0 and the requested maximum
   halved repeatedly: 0, 1, 2, 5 for 5) and score the held-out part: cross-entropy and mIoU.
3. Keep the count with the lowest held-out loss among those whose held-out mIoU is at least
   that of no adaptation, and whose loss is finite (a diverged run is never kept); ties go to
   fewer steps. ``0`` is always a candidate, so the guard can refuse to adapt.
4. Adapt on the whole support with that count. If the support mIoU then falls below the
   unadapted model's, back off to 0 steps.

:class:`GuardReport` records what happened; its :meth:`~GuardReport.as_dict` is the report
the CLI prints and the service returns as ``report`` (``support_miou_before``,
``support_miou_after``, ``steps_kept``, ``steps_tried``, ``held_out_tiles``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from landcover.meta.protocol import AdaptedState, Learner

#: Side of the pixel blocks held out of a single support tile.
BLOCK = 8
#: Share of tiles (or blocks) held out.
HOLD_OUT = 0.25


@dataclass
class GuardReport:
    """What the guard did.

    Attributes:
        support_miou_before: Support mIoU of the meta-learned model (no step).
        support_miou_after: Support mIoU of the kept adapted state.
        steps_kept: Inner steps of the kept state.
        steps_tried: Largest step count tried.
        held_out_tiles: Tiles held out to choose the steps (0: pixel blocks of one tile, or
            no guard).
        curve: Per candidate step count: held-out loss and mIoU.
    """

    support_miou_before: float
    support_miou_after: float
    steps_kept: int
    steps_tried: int
    held_out_tiles: int
    curve: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The shared report dict (see :mod:`landcover.inference.adapt`)."""
        return {
            "support_miou_before": _finite(self.support_miou_before),
            "support_miou_after": _finite(self.support_miou_after),
            "steps_kept": int(self.steps_kept),
            "steps_tried": int(self.steps_tried),
            "held_out_tiles": int(self.held_out_tiles),
        }


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def candidate_steps(max_steps: int) -> list[int]:
    """Step counts tried: ``0`` and ``max_steps`` halved repeatedly down to 1.

    ``0, 1, 2, 5`` for 5; ``0, 1, 3, 6, 12`` for 12: a geometric grid that costs about twice
    the steps of one adaptation.
    """
    out: set[int] = {0}
    s = int(max_steps)
    while s >= 1:
        out.add(s)
        s //= 2
    return sorted(out)


def split_support(
    y: Tensor, tile_of: Tensor, ignore_index: int, seed: int = 0
) -> tuple[Tensor, Tensor, int]:
    """Fit and held-out masks of the support crops (see the module docstring).

    Args:
        y: ``(n, H, W)`` crop masks.
        tile_of: ``(n,)`` index of the support tile each crop comes from.
        ignore_index: Mask value of unlabeled pixels.
        seed: Seed of the random choice.

    Returns:
        ``(fit masks, held-out masks, number of held-out tiles)``; both masks have ``y``'s
        shape with the other part set to ``ignore_index``. The held-out masks are all
        ``ignore_index`` when nothing can be held out.
    """
    g = torch.Generator().manual_seed(seed)
    tiles = torch.unique(tile_of)
    ignore = torch.full_like(y, ignore_index)
    if len(tiles) >= 2:
        k = max(1, round(HOLD_OUT * len(tiles)))
        held_tiles = tiles[torch.randperm(len(tiles), generator=g)[:k]]
        held = torch.isin(tile_of, held_tiles)[:, None, None].expand_as(y)
        n_held = int(k)
    else:
        n, h, w = y.shape
        bh, bw = -(-h // BLOCK), -(-w // BLOCK)
        blocks = torch.rand(n, bh, bw, generator=g) < HOLD_OUT
        held = blocks.repeat_interleave(BLOCK, 1).repeat_interleave(BLOCK, 2)[:, :h, :w]
        n_held = 0
    return torch.where(held, ignore, y), torch.where(held, y, ignore), n_held


def miou(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255) -> float:
    """Mean IoU over the classes present in the prediction or the truth.

    The same definition as ``landcover.evaluation.metrics.segmentation_scores`` (torchmetrics'
    macro Jaccard index), computed from a confusion matrix without importing torchmetrics,
    so the CLI and the service start fast. ``nan`` when every pixel is ignored.
    """
    keep = target != ignore_index
    p, t = pred[keep].long(), target[keep].long()
    if t.numel() == 0:
        return float("nan")
    cm = torch.bincount(t * num_classes + p, minlength=num_classes**2).view(num_classes, -1)
    inter = cm.diag().double()
    union = cm.sum(0).double() + cm.sum(1).double() - inter
    present = union > 0
    return float((inter[present] / union[present]).mean())


def _eval(
    learner: Learner, state: AdaptedState, x: Tensor, y: Tensor, k: int, ig: int, chunk: int
) -> tuple[float, float]:
    """``(cross-entropy, mIoU)`` of a state on crops, computed in chunks."""
    losses, n_px, preds = 0.0, 0, []
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            logits = learner.predict(state, x[i : i + chunk])
            target = y[i : i + chunk]
            labeled = int((target != ig).sum())
            if labeled:
                ce = F.cross_entropy(logits, target, ignore_index=ig, reduction="sum")
                losses += float(ce)
                n_px += labeled
            preds.append(logits.argmax(1))
    loss = losses / n_px if n_px else float("nan")
    return loss, miou(torch.cat(preds), y, k, ig)


def guarded_adapt(
    learner: Learner,
    x: Tensor,
    y: Tensor,
    tile_of: Tensor,
    max_steps: int,
    *,
    num_classes: int,
    ignore_index: int,
    chunk: int = 64,
    seed: int = 0,
) -> tuple[AdaptedState, GuardReport]:
    """Adapt with the number of steps chosen on held-out support (module docstring).

    Args:
        learner: The learner (eval mode).
        x: ``(n, C, H, W)`` normalised support crops.
        y: ``(n, H, W)`` crop masks.
        tile_of: ``(n,)`` support tile of each crop.
        max_steps: Most inner steps to try.
        num_classes: Classes of the scheme.
        ignore_index: Mask value of unlabeled pixels.
        chunk: Crops per forward pass when scoring.
        seed: Seed of the held-out split.

    Returns:
        The adapted state (detached) and the report.
    """
    base = learner.adapt(x, y, steps=0).detached()
    _, before = _eval(learner, base, x, y, num_classes, ignore_index, chunk)
    fit_y, held_y, held_tiles = split_support(y, tile_of, ignore_index, seed)
    tried = candidate_steps(max_steps)
    curve: list[dict[str, float]] = []
    best = 0
    if bool((held_y != ignore_index).any()) and bool((fit_y != ignore_index).any()):
        scores: dict[int, tuple[float, float]] = {}
        for s in tried:
            state = learner.adapt(x, fit_y, steps=s).detached()
            scores[s] = _eval(learner, state, x, held_y, num_classes, ignore_index, chunk)
            curve.append({"steps": s, "held_out_loss": scores[s][0], "held_out_miou": scores[s][1]})
        floor = scores[0][1]
        ok = [
            s
            for s in tried
            if math.isfinite(scores[s][0]) and not scores[s][1] < floor - 1e-9
        ]  # fmt: skip
        if ok:
            best = min(ok, key=lambda s: (scores[s][0], s))
    else:
        best = int(max_steps)  # nothing to hold out: adapt as asked, then back off if worse
    state = learner.adapt(x, y, steps=best).detached() if best else base
    _, after = _eval(learner, state, x, y, num_classes, ignore_index, chunk)
    if best and (not math.isfinite(after) or after < before):
        state, after, best = base, before, 0
    report = GuardReport(before, after, best, max(tried), held_tiles, curve)
    return state, report
