"""A region: labeled tiles that share a class scheme, bands and (usually) a place.

Every reader (SEN12MS scenes, DeepGlobe clusters, users' folders, synthetic regions)
produces :class:`Region` objects, the unit the task sampler draws support and query tiles
from. A region holds lightweight :class:`TileRef` handles; tiles are loaded on access
(optionally cached), so a region of large tiles costs no memory until it is sampled.

A loaded tile is the dict ``{"image": float32 (C, H, W) raw band values, "mask": int64
(H, W) class indices with the ignore index for unlabeled or no-data pixels, "key": str}``,
plus ``"valid"`` (bool (H, W), ``False`` on no-data pixels) when the source has no-data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from rasterio.crs import CRS
from torch import Tensor

from landcover.geo.classes import ClassScheme

Sample = dict[str, Any]


@dataclass(frozen=True)
class TileRef:
    """A handle on one labeled tile.

    Attributes:
        key: Identifier of the tile within its region (file stem, patch id, ...).
        load: Callable returning the tile as ``{"image", "mask"}`` tensors.
    """

    key: str
    load: Callable[[], Sample]


@dataclass
class Region:
    """Labeled tiles of one region.

    Attributes:
        name: Region name (unique within a dataset).
        scheme: Class scheme of the masks.
        band_names: Names of the image bands.
        tiles: Handles on the tiles.
        crs: CRS of the tiles, ``None`` when not georeferenced.
        meta: Reader-specific metadata (season and scene, cluster id, source folder, ...).
        cache: Keep loaded tiles in memory.
    """

    name: str
    scheme: ClassScheme
    band_names: tuple[str, ...]
    tiles: list[TileRef]
    crs: CRS | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    cache: bool = False
    _cached: dict[int, Sample] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> Sample:
        """Load tile ``index`` as ``{"image", "mask", "key"}``."""
        if index < 0:
            index += len(self.tiles)
        if not 0 <= index < len(self.tiles):
            raise IndexError(f"tile {index} out of range for region {self.name!r} ({len(self)})")
        if index in self._cached:
            return self._cached[index]
        ref = self.tiles[index]
        sample = dict(ref.load())
        sample["key"] = ref.key
        if self.cache:
            self._cached[index] = sample
        return sample

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    @property
    def keys(self) -> list[str]:
        """Tile keys in order."""
        return [t.key for t in self.tiles]

    def stack(self, indices: Sequence[int] | None = None) -> tuple[Tensor, Tensor]:
        """Stack tiles (all by default) of equal size into ``(N, C, H, W)`` and ``(N, H, W)``."""
        idx = range(len(self)) if indices is None else indices
        samples = [self[i] for i in idx]
        return (
            torch.stack([s["image"] for s in samples]),
            torch.stack([s["mask"] for s in samples]),
        )

    def class_histogram(self) -> Tensor:
        """Pixel count per class over all tiles (the last entry counts ignored pixels)."""
        counts = torch.zeros(self.scheme.num_classes + 1, dtype=torch.int64)
        for sample in self:
            m = sample["mask"].flatten()
            ignored = (m == self.scheme.ignore_index) | (m >= self.scheme.num_classes)
            counts[-1] += int(ignored.sum())
            counts[:-1] += torch.bincount(m[~ignored], minlength=self.scheme.num_classes)
        return counts


def in_memory_region(
    name: str,
    images: Tensor,
    masks: Tensor,
    scheme: ClassScheme,
    band_names: Sequence[str],
    *,
    keys: Sequence[str] | None = None,
    crs: CRS | None = None,
    meta: dict[str, Any] | None = None,
) -> Region:
    """A region over tensors already in memory (``(N, C, H, W)`` images, ``(N, H, W)`` masks)."""
    if images.ndim != 4 or masks.ndim != 3 or images.shape[0] != masks.shape[0]:
        raise ValueError(
            f"need images (N, C, H, W) and masks (N, H, W); got {tuple(images.shape)} and "
            f"{tuple(masks.shape)}"
        )
    if images.shape[-2:] != masks.shape[-2:]:
        raise ValueError(
            f"image size {tuple(images.shape[-2:])} != mask size {tuple(masks.shape[-2:])}"
        )
    if len(band_names) != images.shape[1]:
        raise ValueError(f"{len(band_names)} band names for {images.shape[1]} bands")
    names = list(keys) if keys is not None else [f"tile_{i:04d}" for i in range(len(images))]
    images = images.float()
    masks = masks.long()

    def loader(i: int) -> Callable[[], Sample]:
        return lambda: {"image": images[i], "mask": masks[i]}

    tiles = [TileRef(names[i], loader(i)) for i in range(len(images))]
    return Region(name, scheme, tuple(band_names), tiles, crs=crs, meta=dict(meta or {}))
