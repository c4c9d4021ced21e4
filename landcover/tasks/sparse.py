"""Sparse labels drawn from full masks: brush strokes or points per class.

An analyst who paints a few strokes of each class on an image gives a *sparse* mask:
every pixel outside the strokes is unlabeled (the ignore index). Meta-training can learn
for that case by drawing support sets the same way from full masks: the task sampler
(:class:`~landcover.tasks.region.RegionTaskSampler`, option ``sparse``) replaces each
support mask by a few simulated strokes (or points) of each class present, while query
masks stay full, so the meta-objective is "adapt from strokes, map everything".

Strokes follow the scribble protocol of Lin et al., "ScribbleSup: Scribble-Supervised
Convolutional Networks for Semantic Segmentation" (CVPR 2016): a smooth random walk that
starts inside a class area and stays in it, drawn with a round brush. Points follow
Bearman et al., "What's the Point: Semantic Segmentation with Point Supervision"
(ECCV 2016): a few pixels per class, chosen uniformly in the class area.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from landcover.geo.classes import IGNORE_INDEX

#: Valid values of :attr:`SparseLabels.mode`.
MODES = ("strokes", "points")


@dataclass(frozen=True)
class SparseLabels:
    """How to turn a full mask into a sparse one.

    Attributes:
        mode: ``"strokes"`` (brush strokes) or ``"points"`` (single labeled pixels).
        per_class: Strokes (or points) per class present in the mask.
        length: Stroke length in pixels, as a fraction of the tile's shorter side.
        width: Brush diameter in pixels.
        min_pixels: Classes with fewer pixels than this in a tile get no label there
            (an analyst does not paint what they cannot see).
    """

    mode: str = "strokes"
    per_class: int = 2
    length: float = 0.3
    width: int = 3
    min_pixels: int = 16

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"sparse mode must be one of {list(MODES)}; got {self.mode!r}")
        if self.per_class < 1 or self.width < 1 or not 0 < self.length <= 1:
            raise ValueError(
                "sparse labels need per_class >= 1, width >= 1 and 0 < length <= 1; got "
                f"per_class={self.per_class}, width={self.width}, length={self.length}"
            )

    @classmethod
    def parse(cls, value: SparseLabels | str | Mapping[str, Any] | None) -> SparseLabels | None:
        """Accept ``None``, a mode name or a config mapping (YAML) and build the settings."""
        if value is None or isinstance(value, SparseLabels):
            return value
        if isinstance(value, str):
            return None if value in ("", "none", "full") else cls(mode=value)
        unknown = sorted(set(value) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"unknown sparse-label options {unknown}; valid: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**dict(value))


def _disk(width: int) -> np.ndarray:
    r = (width - 1) / 2
    yy, xx = np.mgrid[:width, :width]
    return (yy - r) ** 2 + (xx - r) ** 2 <= r * r + 0.5


def _walk(area: np.ndarray, start: tuple[int, int], steps: int, rng: np.random.Generator) -> list:
    """A smooth random walk from ``start`` that stays inside ``area``.

    At the area's border it turns (up to 8 tries) and stops only where it cannot go on.
    """
    h, w = area.shape
    y, x = float(start[0]), float(start[1])
    angle = rng.uniform(0, 2 * np.pi)
    path = [start]
    for _ in range(steps):
        for attempt in range(9):
            step_angle = angle + rng.normal(0, 0.35 if attempt == 0 else 1.5)
            ny, nx = y + np.sin(step_angle), x + np.cos(step_angle)
            iy, ix = round(ny), round(nx)
            if 0 <= iy < h and 0 <= ix < w and area[iy, ix]:
                break
        else:
            break
        angle, y, x = step_angle, ny, nx
        path.append((iy, ix))
    return path


def sparsify(
    mask: Tensor | np.ndarray,
    spec: SparseLabels,
    rng: np.random.Generator,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """A sparse version of ``mask``: strokes or points per class, the rest ``ignore_index``.

    Args:
        mask: ``(H, W)`` class indices (``ignore_index`` for unlabeled pixels).
        spec: Stroke or point settings.
        rng: Random generator (the sampler passes the task's, so tasks stay deterministic).
        ignore_index: Class index of unlabeled pixels.

    Returns:
        ``(H, W)`` int64 mask; labeled pixels keep their class from ``mask`` (no pixel is
        ever given a class it did not have).
    """
    full = torch.as_tensor(mask).cpu().numpy().astype(np.int64)
    out = np.full_like(full, ignore_index)
    h, w = full.shape
    disk = _disk(spec.width)
    steps = max(1, round(spec.length * min(h, w)))
    for c in np.unique(full):
        if c == ignore_index:
            continue
        area = full == c
        if area.sum() < spec.min_pixels:
            continue
        inner = ndimage.binary_erosion(area, disk) if spec.width > 1 else area
        seeds = np.argwhere(inner if inner.any() else area)
        picks = seeds[rng.choice(len(seeds), size=min(spec.per_class, len(seeds)), replace=False)]
        drawn = np.zeros_like(area)
        for y0, x0 in picks:
            if spec.mode == "points":
                drawn[y0, x0] = True
                continue
            for y, x in _walk(inner if inner.any() else area, (int(y0), int(x0)), steps, rng):
                drawn[y, x] = True
        if spec.mode == "strokes" and spec.width > 1:
            drawn = ndimage.binary_dilation(drawn, disk)
        out[drawn & area] = c
    return torch.from_numpy(out)


def labeled_fraction(mask: Tensor, ignore_index: int = IGNORE_INDEX) -> float:
    """Share of pixels of ``mask`` that carry a class."""
    return float((mask != ignore_index).float().mean())
