"""Few-shot segmentation tasks drawn from regions: k labeled support tiles + disjoint query tiles.

Each task is one region's episode, as in the regional meta-learning setting of Rußwurm et
al., "Meta-Learning for Few-Shot Land Cover Classification" (CVPR Workshops 2020): a region
is drawn, then ``k`` support tiles and a disjoint set of query tiles of it (tiles, not
pixels, are disjoint), each cropped at random to ``tile_size``, optionally remapped to
another class scheme, normalised band by band and augmented jointly with its mask.

Tasks are deterministic in ``(seed, index)``: :meth:`RegionTaskSampler.task` with the same
index returns the same task, so evaluation is reproducible and ranks of a distributed run
can split indices. The sampler is also a map-style ``torch.utils.data.Dataset`` of
``length`` tasks (use ``collate_fn=list`` in a ``DataLoader``).

Tensors of a task: ``support_x (k, C, H, W)`` float32 (normalised when ``stats`` is given),
``support_y (k, H, W)`` int64 with ``ignore_index`` (255) for unlabeled pixels, ``query_x``
and ``query_y`` alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from landcover.geo.augment import apply_joint, build_augmentation
from landcover.geo.classes import IGNORE_INDEX
from landcover.geo.normalize import BandStats
from landcover.geo.region import Region
from landcover.tasks.sparse import SparseLabels, sparsify
from landcover.tasks.task import Task


def _stack(tiles: list[Tensor], region: Region) -> Tensor:
    """Stack tiles of one size; tiles kept whole (``tile_size=None``) may differ."""
    sizes = sorted({tuple(t.shape[-2:]) for t in tiles})
    if len(sizes) > 1:
        shown = ", ".join(f"{w}×{h}" for h, w in sizes[:4])
        raise ValueError(
            f"tiles of region {region.name!r} differ in size ({shown} px) and tile_size is "
            "None (keep tiles whole); give a tile_size to crop them to one size"
        )
    return torch.stack(tiles)


class RegionTaskSampler(Dataset):
    """Sample few-shot segmentation tasks from regions.

    Args:
        regions: Regions to draw from (all with the same bands and class scheme).
        shots: Support tiles per task, or a list to draw ``k`` from per task (e.g. ``[1, 5]``).
        query: Query tiles per task (capped by the tiles left in the region after the support).
        tile_size: Crop size in pixels; ``None`` keeps tiles whole (they must then share a
            size). Tiles smaller than ``tile_size`` are padded (image 0, mask ignore).
        stats: Band statistics to normalise images with; ``None`` leaves raw values.
        min_support_classes: Redraw until the support shows at least this many classes.
        augment: ``None``, a preset name of :mod:`landcover.geo.augment` or an albumentations
            pipeline, applied jointly to every support and query tile.
        ignore_index: Class index of unlabeled pixels in the returned masks.
        remap: Optional class index -> new index table; classes not listed become ignored.
        seed: Base seed; task ``i`` depends only on ``(seed, i)``.
        length: Number of tasks when used as a ``Dataset`` (an epoch).
        max_tries: Redraws allowed per task before giving up on ``min_support_classes``.
        sparse: Sparse-label support sets: ``None`` (full masks), ``"strokes"``,
            ``"points"`` or a :class:`~landcover.tasks.sparse.SparseLabels` mapping; each
            support mask is replaced by simulated strokes/points of its classes (query
            masks stay full), as an analyst painting a few strokes would give.
    """

    def __init__(
        self,
        regions: Sequence[Region],
        *,
        shots: int | Sequence[int] = 5,
        query: int = 10,
        tile_size: int | None = None,
        stats: BandStats | None = None,
        min_support_classes: int = 1,
        augment: str | A.Compose | None = None,
        ignore_index: int = IGNORE_INDEX,
        remap: Mapping[int, int] | None = None,
        seed: int = 0,
        length: int = 1000,
        max_tries: int = 100,
        sparse: SparseLabels | str | Mapping[str, Any] | None = None,
    ) -> None:
        if not regions:
            raise ValueError("RegionTaskSampler needs at least one region")
        self.regions = list(regions)
        self.shots = [shots] if isinstance(shots, int) else [int(k) for k in shots]
        if not self.shots or min(self.shots) < 1 or query < 1:
            raise ValueError(f"shots must be >= 1 and query >= 1; got shots={shots}, query={query}")
        too_small = [r.name for r in self.regions if len(r) < max(self.shots) + 1]
        if too_small:
            raise ValueError(
                f"regions {too_small} have fewer than shots + 1 = {max(self.shots) + 1} tiles; "
                "use fewer shots or drop those regions"
            )
        bands = {len(r.band_names) for r in self.regions}
        if len(bands) != 1:
            raise ValueError(f"regions have different band counts {sorted(bands)}")
        self.query = query
        self.tile_size = tile_size
        self.stats = stats
        if stats is not None and stats.num_bands != bands.pop():
            raise ValueError(
                f"band statistics have {stats.num_bands} bands, the regions "
                f"{len(self.regions[0].band_names)}"
            )
        self.min_support_classes = min_support_classes
        self.augment = (
            build_augmentation(augment, ignore_index) if isinstance(augment, str) else augment
        )
        self.ignore_index = ignore_index
        self.lut: Tensor | None = None
        if remap is not None:
            lut = torch.full((256,), ignore_index, dtype=torch.int64)
            for old, new in remap.items():
                lut[int(old)] = int(new)
            self.lut = lut
        self.seed = seed
        self.length = length
        self.max_tries = max_tries
        self.sparse = SparseLabels.parse(sparse)
        self._by_name = {r.name: i for i, r in enumerate(self.regions)}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Task:
        return self.task(index)

    def tasks(self, n: int, start: int = 0, **kwargs: Any) -> list[Task]:
        """Tasks ``start .. start + n - 1``."""
        return [self.task(i, **kwargs) for i in range(start, start + n)]

    def _region_index(self, region: int | str | None, rng: np.random.Generator) -> int:
        if region is None:
            return int(rng.integers(len(self.regions)))
        if isinstance(region, str):
            if region not in self._by_name:
                raise KeyError(f"unknown region {region!r}; regions: {sorted(self._by_name)}")
            return self._by_name[region]
        return int(region)

    def _tile(self, region: Region, i: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        sample = region[i]
        x, y = sample["image"].float(), sample["mask"].long()
        if self.lut is not None:
            y = self.lut[y.clamp(0, 255)]
        elif self.ignore_index != region.scheme.ignore_index:
            y = torch.where(y == region.scheme.ignore_index, self.ignore_index, y)
        if self.stats is not None:
            x = self.stats.normalize(x)
        if "valid" in sample:
            x = torch.where(sample["valid"][None], x, torch.zeros(()))
        if self.tile_size is not None:
            t = self.tile_size
            h, w = y.shape
            if h < t or w < t:
                ph, pw = max(t - h, 0), max(t - w, 0)
                x = F.pad(x, (0, pw, 0, ph))
                y = F.pad(y, (0, pw, 0, ph), value=self.ignore_index)
                h, w = y.shape
            r0, c0 = int(rng.integers(h - t + 1)), int(rng.integers(w - t + 1))
            x, y = x[:, r0 : r0 + t, c0 : c0 + t], y[r0 : r0 + t, c0 : c0 + t]
        if self.augment is not None:
            x, y = apply_joint(self.augment, x, y, int(rng.integers(2**31)))
        return x.contiguous(), y.contiguous()

    def task(
        self, index: int, *, shots: int | None = None, region: int | str | None = None
    ) -> Task:
        """The task of ``index`` (deterministic in ``(seed, index)``).

        Args:
            index: Task index.
            shots: Override the number of support tiles.
            region: Draw from this region (index or name) instead of a random one.

        Raises:
            ValueError: No draw satisfied ``min_support_classes`` within ``max_tries``.
        """
        rng = np.random.default_rng([self.seed, index])
        k = int(shots) if shots is not None else int(rng.choice(self.shots))
        for _ in range(self.max_tries):
            ri = self._region_index(region, rng)
            reg = self.regions[ri]
            if len(reg) < k + 1:
                raise ValueError(
                    f"region {reg.name!r} has {len(reg)} tiles; need shots + 1 = {k + 1}"
                )
            q = min(self.query, len(reg) - k)
            picks = rng.choice(len(reg), k + q, replace=False)
            support = [self._tile(reg, int(i), rng) for i in picks[:k]]
            sy = _stack([s[1] for s in support], reg)
            if self.sparse is not None:  # own generator: the same tiles and crops as full masks
                srng = np.random.default_rng([self.seed, index, 1])
                sy = torch.stack([sparsify(y, self.sparse, srng, self.ignore_index) for y in sy])
            present = torch.unique(sy[sy != self.ignore_index])
            if len(present) < self.min_support_classes:
                continue
            query = [self._tile(reg, int(i), rng) for i in picks[k:]]
            return Task(
                support_x=_stack([s[0] for s in support], reg),
                support_y=sy,
                query_x=_stack([s[0] for s in query], reg),
                query_y=_stack([s[1] for s in query], reg),
                meta={
                    "region": reg.name,
                    "support": [reg.tiles[int(i)].key for i in picks[:k]],
                    "query": [reg.tiles[int(i)].key for i in picks[k:]],
                    "index": index,
                    "seed": self.seed,
                    "shots": k,
                    "support_classes": present.tolist(),
                },
            )
        raise ValueError(
            f"no task with at least {self.min_support_classes} classes in the support after "
            f"{self.max_tries} draws (shots={k}, region={region}); lower min_support_classes, "
            "use more shots or larger tiles"
        )
