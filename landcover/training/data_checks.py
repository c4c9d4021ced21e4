"""What ``landcover train`` says about the data before it trains: the split and the misfits.

A user's run silently took one of their three regions as a test region, padded their 64 px
tiles into 256 px crops and ran the network on 4x4-pixel blocks of 28.5 m pixels (a stride
chosen for sub-metre imagery). :func:`split_lines` states the split (it is also recorded in
the bundle's ``info.regions``); :func:`fit_warnings` names each setting that does not fit
the data and the value to use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from landcover.geo.region import Region

__all__ = ["fit_warnings", "pixel_size_m", "split_lines"]

#: Pixels coarser than this (metres) are not what a stride > 1 was chosen for.
COARSE_PIXEL_M = 2.0


def split_lines(
    train: Sequence[Region], val: Sequence[Region], test: Sequence[Region]
) -> list[str]:
    """One line per split: regions and tiles, and the settings that choose them."""
    lines = []
    for name, regions in (("train", train), ("val", val), ("test", test)):
        tiles = sum(len(r) for r in regions)
        listed = ", ".join(r.name for r in regions) or "none"
        lines.append(f"{name:>5}: {len(regions)} region(s), {tiles} tiles: {listed}")
    lines.append("(choose with --data.val_regions / --data.test_regions: a count or names)")
    return lines


def pixel_size_m(region: Region) -> float | None:
    """Pixel size in metres of a folder region's first image (``None``: unknown)."""
    from landcover.geo.folder import _pairs
    from landcover.geo.raster import read_profile

    path = region.meta.get("path")
    if path is None:
        return None
    pairs = _pairs(Path(path), problems=[])
    if not pairs:
        return None
    profile = read_profile(pairs[0][1])
    if profile.crs is None or not profile.crs.is_projected:
        return None
    factor = profile.crs.linear_units_factor[1]
    return abs(profile.transform.a) * float(factor)


def fit_warnings(
    train: Sequence[Region], tile_size: int | None, model_options: dict[str, Any]
) -> list[str]:
    """Settings that do not fit the training data, each naming the setting to change.

    Args:
        train: The training regions.
        tile_size: ``data.tile_size`` (``None``: the tiles' own size, nothing to check).
        model_options: ``model.model_options`` (its ``stride``).
    """
    out: list[str] = []
    sides = [min(r[0]["mask"].shape) for r in train if len(r)]
    if tile_size is not None and sides and min(sides) < tile_size:
        small = min(sides)
        share = 1 - small**2 / tile_size**2
        out.append(
            f"tiles are {small} px but data.tile_size is {tile_size}: each crop is "
            f"{share:.0%} padding (ignored pixels); set --data.tile_size {small} or leave "
            "it unset (null) to use the tiles' own size"
        )
    stride = int(model_options.get("stride", 1) or 1)
    size = pixel_size_m(train[0]) if train and stride > 1 else None
    if size is not None and size >= COARSE_PIXEL_M:
        out.append(
            f"model_options.stride {stride} runs the network on {stride}x{stride}-pixel "
            f"blocks, {stride * size:g} m at this data's {size:g} m pixels; it was chosen "
            "for sub-metre imagery; set --model.model_options.stride 1 for data at "
            f"{COARSE_PIXEL_M:g} m or coarser"
        )
    return out
