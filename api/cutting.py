"""Cutting real-size support tiles into the crops adaptation uses, as they are read.

Aerial tiles come at 1000–4096 px a side, while adaptation computes on a pool of
``tile_size`` crops of bounded size (:func:`landcover.inference.adapt.crop_pool`, at most
:func:`~landcover.inference.adapt.input_pixel_budget` input pixels). Keeping every tile
whole until the adaptation runs would hold (and store, for a queued job) hundreds of
megabytes per tile that the pool never looks at; so the service cuts each tile right after
reading it, with the pool's own rule: the tile's labeled ``tile_size`` crops, a seeded
random draw of at most the pool's budget of them (the whole pool could come from this one
tile). Tiles within the budget stay as they are.

The kept crops of one tile are laid side by side in a strip ``tile_size`` high: cutting
that strip again on the ``tile_size`` grid (what :func:`crop_pool` does at adaptation
time) gives back exactly those crops, and they still belong to one tile, so the
adaptation guard holds out whole tiles as before (:mod:`landcover.inference.adapt_guard`).
"""

from __future__ import annotations

import numpy as np
import torch

from landcover.inference.adapt import crop_pool
from landcover.inference.sliding import window_starts


def crops_of_tile(
    image: np.ndarray,
    mask: np.ndarray,
    tile_size: int,
    ignore_index: int,
    max_pixels: int,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The crops of one support tile that adaptation may use, as a strip (or the tile).

    Args:
        image: Raw ``(C, H, W)`` float32 tile.
        mask: ``(H, W)`` class indices, ``ignore_index`` where unlabeled.
        tile_size: The model's tile size (crop side).
        ignore_index: Mask value of unlabeled pixels.
        max_pixels: The crop pool's budget in input pixels; a tile whose labeled crops
            hold more is cut down to a seeded draw of that many pixels of crops.
        seed: Seed of the draw.

    Returns:
        ``image`` and ``mask`` unchanged when their labeled crops fit the budget, else a
        ``(C, tile_size, n * tile_size)`` image (``nan`` where a crop was padded past a
        short tile's edge) and its ``(tile_size, n * tile_size)`` mask.

    Raises:
        landcover.inference.errors.BundleError: The mask labels no pixel.
    """
    budget = max(1, int(max_pixels) // tile_size**2)
    if _labeled_crops(mask, tile_size, ignore_index) <= budget:
        return image, mask
    x, y, _ = crop_pool(
        [torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))],
        [torch.from_numpy(np.ascontiguousarray(mask)).long()],
        tile_size,
        ignore_index,
        max_pixels=budget * tile_size**2,
        seed=seed,
    )
    strip = torch.cat(list(x), dim=-1).numpy()  # (C, t, n·t)
    strip_mask = torch.cat(list(y), dim=-1).numpy().astype(mask.dtype)
    return strip, strip_mask


def _labeled_crops(mask: np.ndarray, tile_size: int, ignore_index: int) -> int:
    """How many grid crops of ``mask`` (the pool's grid) hold a labeled pixel."""
    h, w = mask.shape
    labeled = mask != ignore_index
    return sum(
        bool(labeled[r : r + tile_size, c : c + tile_size].any())
        for r in window_starts(max(h, tile_size), tile_size, 0)
        for c in window_starts(max(w, tile_size), tile_size, 0)
    )
