"""One normalisation statistic per raster, so that a map does not depend on its windows.

Some networks normalise with statistics of the data at hand: BatchNorm with the
transductive policy (the statistics of the batch, as MAML's reference code does; Finn et
al. 2017, Nichol et al. 2018 on transduction), GroupNorm (Wu & He 2018) and InstanceNorm
(over each window's own pixels). Run window by window, each window would be normalised
with its own statistics: the map would change with the window size, the overlap and the
other windows of a batch, and straight class edges would run along the windows' seams.

:class:`NormStatistics` computes the statistics once for a whole raster and then
normalises every window with them. A layer's input depends on how the layers before it
normalised, so the statistics are gathered layer by layer in forward order: for layer
``l`` the windows run forward (layers before ``l`` already using their raster statistics)
up to ``l``, whose input is accumulated over the valid pixels of every window and the
forward stopped there. Per BatchNorm / InstanceNorm channel, or per GroupNorm group,
the mean and the (biased) variance over all these pixels replace the batch's or window's
own; the layer's affine transform is kept.

The windows are a non-overlapping grid over the raster (:func:`grid_windows`); rasters
with more than :data:`MAX_WINDOWS` grid cells use an evenly spread subset of them, still
one statistic for every window of the map.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

#: Most grid windows the statistics are gathered from.
MAX_WINDOWS = 32
#: Side of those windows: large windows have few borders (see :func:`grid_windows`).
STATS_WINDOW = 1024


#: BatchNorm layers (fixed when the learner normalises with the batch's statistics).
BATCH: tuple[type, ...] = (_BatchNorm,)
#: Every normalisation over the data at hand.
DATA_NORMS: tuple[type, ...] = (_BatchNorm, nn.GroupNorm, _InstanceNorm)


class _Reached(Exception):
    """Raised by the hook of the layer being gathered: the rest of the forward is moot."""


def grid_windows(height: int, width: int, multiple: int = 1) -> list[tuple[int, ...]]:
    """Windows over a raster that together own every pixel once, away from their edges.

    The windows are :data:`STATS_WINDOW` px, whatever the prediction's window, so that
    maps made with other windows use the same statistics. Convolutions pad a window's
    border with zeros, so the features of its outermost pixels are not those the raster
    has there: each window *owns* only its central part (all but a margin of
    ``STATS_WINDOW // 8`` on sides inside the raster) and the owned parts tile the
    raster. Windows start on multiples of ``multiple`` (the network's size divisor), on
    the pooling grid of the whole raster, as the prediction's windows do. At most
    :data:`MAX_WINDOWS` windows, evenly spread over the grid.

    Returns:
        ``(row, col, rows, cols, own_top, own_bottom, own_left, own_right)`` per window:
        where it is read, and its owned part in window coordinates.
    """
    if height < 1 or width < 1 or multiple < 1:
        raise ValueError(f"raster size and multiple must be positive; got {height}x{width}, "
                         f"multiple {multiple}")  # fmt: skip
    window = max(STATS_WINDOW, 4 * multiple)
    margin = max(window // 8, multiple)
    step = window - 2 * margin

    def axis(total: int) -> list[tuple[int, int, int, int]]:
        out = []
        for a in range(0, total, step):
            b = min(a + step, total)
            start = max(a - margin, 0) // multiple * multiple
            end = min(start + window, total)
            out.append((start, end - start, a - start, b - start))
        return out

    cells = [(y, x, rows, cols, t, b, left, right)
             for y, rows, t, b in axis(height) for x, cols, left, right in axis(width)]  # fmt: skip
    if len(cells) > MAX_WINDOWS:
        keep = np.unique(np.linspace(0, len(cells) - 1, MAX_WINDOWS).round().astype(int))
        cells = [cells[i] for i in keep]
    return cells


class NormStatistics:
    """Forward hooks that normalise a network's data-dependent norms with fixed statistics.

    With no statistics set (:meth:`clear`) the hooks change nothing: the layers normalise
    as they always do.

    Args:
        model: The network whose layers are hooked (the hooks stay for its lifetime).
        kinds: The layer types to fix: :data:`BATCH` (BatchNorm that a learner runs on
            the batch's statistics) or also GroupNorm / InstanceNorm (:data:`DATA_NORMS`).
    """

    def __init__(self, model: nn.Module, kinds: tuple[type, ...] = DATA_NORMS) -> None:
        self.layers = {n: m for n, m in model.named_modules() if isinstance(m, kinds)}
        self.stats: dict[str, tuple[Tensor, Tensor]] = {}
        self._target: str | None = None
        self._order: list[str] | None = None
        self._weight: Tensor | None = None
        self._sums: list[Tensor] = []
        for name, module in self.layers.items():
            module.register_forward_hook(functools.partial(self._hook, name))

    def clear(self) -> None:
        """Forget the statistics: the layers normalise over the data at hand again."""
        self.stats = {}

    def _hook(self, name: str, module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Any:
        x = inputs[0]
        if self._order is not None:
            self._order.append(name)
        if name == self._target:
            self._accumulate(module, x)
            raise _Reached
        if name not in self.stats:
            return None
        mean, var = self.stats[name]
        weight = getattr(module, "weight", None)
        bias = getattr(module, "bias", None)
        return F.batch_norm(x, mean.to(x), var.to(x), weight, bias, False, 0.0, module.eps)

    def _accumulate(self, module: nn.Module, x: Tensor) -> None:
        assert self._weight is not None  # set by gather() for every forward
        w = F.interpolate(self._weight.to(x), size=tuple(x.shape[-2:]), mode="area").double()
        xd = x.detach().double()
        parts = [w.sum().expand(1), (xd * w).sum((0, 2, 3)), (xd * xd * w).sum((0, 2, 3))]
        self._sums = parts if not self._sums else [a + b for a, b in zip(self._sums, parts)]

    def _finish(self, module: nn.Module) -> tuple[Tensor, Tensor]:
        n, s1, s2 = self._sums
        if isinstance(module, nn.GroupNorm):  # one statistic per group of channels
            per = s1.numel() // module.num_groups
            s1 = s1.view(module.num_groups, per).sum(1).repeat_interleave(per)
            s2 = s2.view(module.num_groups, per).sum(1).repeat_interleave(per)
            n = n * per
        mean = s1 / n
        var = (s2 / n - mean * mean).clamp_min(0.0)
        return mean.float(), var.float()

    def gather(
        self, forward: Callable[[Tensor], Any], windows: Iterable[tuple[Tensor, Tensor]]
    ) -> None:
        """Compute every hooked layer's statistics over ``windows``, in forward order.

        Args:
            forward: Runs the network on one ``(1, C, h, w)`` prepared window.
            windows: ``(window (1, C, h, w), weight (1, 1, h, w))`` pairs; the weight is 1
                on valid pixels and 0 on nodata and padding.

        A raster without a valid pixel gets no statistics (it has no window to map
        either: windows without valid pixels are skipped).
        """
        self.clear()
        pairs = [(x, w) for x, w in windows if float(w.sum()) > 0]
        if not pairs:
            return
        self._order, self._weight = [], pairs[0][1]
        try:
            forward(pairs[0][0])
            order = list(dict.fromkeys(self._order))
        finally:
            self._order = None
        try:
            for name in order:
                self._target, self._sums = name, []
                for x, w in pairs:
                    self._weight = w
                    with contextlib.suppress(_Reached):
                        forward(x)
                if self._sums and float(self._sums[0]) > 0:
                    self.stats[name] = self._finish(self.layers[name])
        except BaseException:
            self.clear()
            raise
        finally:
            self._target, self._weight, self._sums = None, None, []
