"""Sliding-window planning and smooth blending of overlapping window predictions.

A raster larger than the network's input is cut into overlapping windows; each window's
class probabilities are multiplied by a weight that falls smoothly to (almost) zero
towards the sides shared with a neighbouring window and stays 1 on sides that lie on the
raster's border; the blended probability of a pixel is the weighted mean over the windows
that cover it. Predictions near a window's border (where the convolutions saw zero
padding) do not count (the outer 3/8 of each overlap), the two windows cross-fade over the
middle quarter of their overlap, and no seam appears where windows meet. With windows on
the network's pooling grid (:class:`WindowPlan`) a network whose receptive radius fits in
the margin gives exactly its whole-raster output. This is the
"smooth tiling" of overlap-tile strategies (Ronneberger et al. 2015, section 2; Huang et
al. 2018, "Tiling and stitching segmentation output for remote sensing", who show that
weighted blending of overlapping tiles removes the edge artefacts of naive stitching).

Memory is bounded by one *strip* of rows: the windows are processed row of windows by
row of windows, and :class:`StripBlender` keeps accumulators only for the rows the current
row of windows covers; rows no later window can touch are finished and handed back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def window_starts(total: int, window: int, overlap: int) -> list[int]:
    """Start offsets of windows of ``window`` pixels covering ``total`` pixels.

    Windows step by ``window - overlap``; the last one is shifted back to end at the edge,
    so every window has the full size (when ``total >= window``).

    Raises:
        ValueError: ``overlap`` is negative or not smaller than ``window``.
    """
    if window < 1 or not 0 <= overlap < window:
        raise ValueError(f"need window >= 1 and 0 <= overlap < window; got {window}, {overlap}")
    window = min(window, total)
    step = max(window - overlap, 1)
    starts = list(range(0, max(total - window, 0) + 1, step))
    if starts[-1] + window < total:
        starts.append(total - window)
    return starts


def balanced_window(height: int, width: int, window: int, overlap: int, multiple: int = 8) -> int:
    """The window size, at most ``window``, that computes the fewest pixels.

    The last window of a row is shifted back to end at the raster's edge, so a window size
    that does not divide the raster well recomputes much of its neighbour (a 10980 px side
    in 1024 px windows overlapping by 128 needs 13 windows, 1.21x the side). Among sizes
    from ``window / 2`` to ``window`` (multiples of ``multiple``), pick the one with the
    fewest computed pixels (ties: the larger).
    """
    best, best_cost = window, math.inf
    lo = max(overlap + multiple, (window // 2) // multiple * multiple)
    for w in range(window - window % multiple, lo - 1, -multiple):
        if w <= overlap:
            break
        n = len(window_starts(height, w, overlap)) * len(window_starts(width, w, overlap))
        cost = n * min(w, height) * min(w, width)
        if cost < best_cost:
            best, best_cost = w, cost
    return best


def ramp(length: int, before: int, after: int) -> Tensor:
    """1-D blending weight over a window of ``length`` pixels.

    On a side shared with a neighbour over ``n`` pixels (``before`` at the start,
    ``after`` at the end) the outer ``m = 3n // 8`` pixels get weight 0 (the neighbour's
    interior covers them, so border artefacts of zero padding never enter the blend), the
    next ``n - 2m`` pixels rise as ``sin²(π/2 · (j + 1) / (n - 2m + 1))`` and the inner
    ``m`` pixels of the overlap keep weight 1, as does the rest of the window: the two
    windows cross-fade over the middle quarter of their overlap. Sides on the raster's
    border (``0``) are not tapered. A network whose receptive radius is at most ``m``
    pixels therefore blends to exactly its full-image output.
    """
    w = torch.ones(length, dtype=torch.float64)
    for n, flip in ((min(before, length), False), (min(after, length), True)):
        if n <= 0:
            continue
        m = 3 * n // 8
        j = torch.arange(n - 2 * m, dtype=torch.float64)
        r = torch.cat([torch.zeros(m, dtype=torch.float64),
                       torch.sin(0.5 * math.pi * (j + 1) / (n - 2 * m + 1)) ** 2,
                       torch.ones(m, dtype=torch.float64)])  # fmt: skip
        if flip:
            w[length - n :] = w[length - n :] * r.flip(0)
        else:
            w[:n] = w[:n] * r
    return w.float()


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows of a ``raster_h x raster_w`` raster go.

    The windows tile the raster padded at the bottom and right to ``height x width``, a
    multiple of the network's size divisor (as one forward pass over the whole raster
    pads it; the pixels are mirrored, :func:`pad_to`). With a window and an overlap
    that are multiples of the divisor too, every window starts on the network's pooling
    grid, so inside its blending margin it computes exactly what the whole-raster forward
    pass computes there.

    Attributes:
        height: Rows of the padded raster.
        width: Columns of the padded raster.
        win_h: Window rows (``min(window, height)``).
        win_w: Window columns (``min(window, width)``).
        row_starts: Top row of each row of windows.
        col_starts: Left column of each column of windows.
        raster_h: Rows of the raster.
        raster_w: Columns of the raster.
    """

    height: int
    width: int
    win_h: int
    win_w: int
    row_starts: tuple[int, ...]
    col_starts: tuple[int, ...]
    raster_h: int
    raster_w: int

    @classmethod
    def make(
        cls, height: int, width: int, window: int, overlap: int, multiple: int = 1
    ) -> WindowPlan:
        """Plan windows of ``window`` pixels overlapping by ``overlap`` pixels.

        ``multiple``: pad the raster to a multiple of this (the network's size divisor), and
        round ``window`` and ``overlap`` up to multiples of it, so that every window starts
        on the network's pooling grid (a model run at ``stride`` 4 with depth 3 pools by 32:
        a window off that grid computes other numbers than the whole-image pass).
        """
        if height < 1 or width < 1:
            raise ValueError(f"cannot tile an empty raster ({height} x {width})")
        if multiple > 1:
            window = -(-window // multiple) * multiple
            overlap = min(-(-overlap // multiple) * multiple, window - multiple)
        hp, wp = -(-height // multiple) * multiple, -(-width // multiple) * multiple
        return cls(
            hp,
            wp,
            min(window, hp),
            min(window, wp),
            tuple(window_starts(hp, window, overlap)),
            tuple(window_starts(wp, window, overlap)),
            height,
            width,
        )

    def __len__(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    @staticmethod
    def sides(starts: tuple[int, ...], size: int, i: int) -> tuple[int, int]:
        """Pixels window ``i`` shares with the previous and with the next window."""
        before = starts[i - 1] + size - starts[i] if i > 0 else 0
        after = starts[i] + size - starts[i + 1] if i + 1 < len(starts) else 0
        return max(before, 0), max(after, 0)

    def weight(self, row: int, col: int) -> Tensor:
        """``(win_h, win_w)`` blending weight of window ``(row, col)``."""
        top, bottom = self.sides(self.row_starts, self.win_h, row)
        left, right = self.sides(self.col_starts, self.win_w, col)
        return ramp(self.win_h, top, bottom)[:, None] * ramp(self.win_w, left, right)[None, :]

    def finished_rows(self, row: int) -> tuple[int, int]:
        """Rows ``[start, stop)`` that are final once window row ``row`` is accumulated."""
        start = self.row_starts[row]
        if row + 1 < len(self.row_starts):
            return start, self.row_starts[row + 1]
        return start, self.height


def pad_to(data: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Pad ``(..., h, w)`` at the bottom and right to ``rows x cols`` by mirroring.

    Mirrored without repeating the edge (``reflect``), as the predictor pads a window to
    the network's size divisor; ``edge`` where the image is too small to mirror.
    """
    ph, pw = rows - data.shape[-2], cols - data.shape[-1]
    if ph <= 0 and pw <= 0:
        return data
    mode = "reflect" if ph < data.shape[-2] and pw < data.shape[-1] else "edge"
    return np.pad(data, [(0, 0)] * (data.ndim - 2) + [(0, ph), (0, pw)], mode=mode)


class StripBlender:
    """Accumulate weighted window probabilities for one strip of rows at a time.

    Usage, for each row of windows ``r`` in order: :meth:`add` every window of the row,
    then :meth:`finish_row` returns the blended rows that are final.

    Memory: ``(channels + 1) x win_h x width`` floats, whatever the raster's height.
    """

    def __init__(self, plan: WindowPlan, channels: int) -> None:
        self.plan = plan
        self.channels = channels
        self.acc = torch.zeros(channels, plan.win_h, plan.width)
        self.wsum = torch.zeros(plan.win_h, plan.width)
        self._row = 0
        self._weights: dict[tuple[tuple[int, int], tuple[int, int]], Tensor] = {}

    def _weight(self, row: int, col: int) -> Tensor:
        # Windows share a handful of distinct weights (inner, border, last): cache by sides.
        p = self.plan
        sides = (
            p.sides(p.row_starts, p.win_h, row),
            p.sides(p.col_starts, p.win_w, col),
        )
        if sides not in self._weights:
            self._weights[sides] = p.weight(row, col)
        return self._weights[sides]

    def add(self, row: int, col: int, probs: Tensor) -> None:
        """Accumulate window ``(row, col)``'s ``(channels, win_h, win_w)`` probabilities."""
        if row != self._row:
            raise ValueError(f"windows must come row by row: expected row {self._row}, got {row}")
        expected = (self.channels, self.plan.win_h, self.plan.win_w)
        if tuple(probs.shape) != expected:
            raise ValueError(f"window probabilities {tuple(probs.shape)} != {expected}")
        w = self._weight(row, col)
        x0 = self.plan.col_starts[col]
        x1 = x0 + self.plan.win_w
        self.acc[:, :, x0:x1].add_(probs.float() * w)
        self.wsum[:, x0:x1].add_(w)

    def finish_row(self, row: int, *, argmax: bool = False) -> tuple[int, Tensor]:
        """Blend and return ``(first_row, (channels, n, width))``: the rows now final.

        With ``argmax`` only the ``(n, width)`` uint8 index of the largest blended value
        is returned (the weighted sum has the same argmax as the weighted mean, so the
        division is skipped). The accumulators then move down to the next row of windows.
        """
        if row != self._row:
            raise ValueError(f"finish rows in order: expected row {self._row}, got {row}")
        start, stop = self.plan.finished_rows(row)
        n = stop - start
        if argmax:
            out = self.acc[:, :n].argmax(0).to(torch.uint8)
        else:
            out = self.acc[:, :n] / self.wsum[:n].clamp_min(1e-12)
        if row + 1 < len(self.plan.row_starts):
            keep = self.plan.win_h - n
            self.acc[:, :keep] = self.acc[:, n:].clone()
            self.acc[:, keep:] = 0
            self.wsum[:keep] = self.wsum[n:].clone()
            self.wsum[keep:] = 0
        self._row += 1
        return start, out
