"""Procedural land-cover maps: the shared *structure* of the synthetic regions.

A map is drawn in class indices (:data:`FIELDS` ... :data:`BARE`) from smooth Gaussian
random fields and simple geometry:

* fields, forest and bare ground from thresholded smooth noise, with per-map fractions drawn
  from a Dirichlet distribution; fields are split into rectangular parcels (a jittered grid);
* lakes where another smooth field is high; rivers as meandering random walks crossing the
  map (2-5 px wide);
* a few near-straight roads crossing the map, settlements where smooth noise is high close
  to a road.

Appearance (spectra, texture, noise) is added by :mod:`landcover.geo.synthetic`.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

#: Class indices of the synthetic land-cover classes.
FIELDS, FOREST, WATER, ROAD, SETTLEMENT, BARE = range(6)


def noise_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth Gaussian random field (periodic), standardised to mean 0 and std 1."""
    field_ = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field_ - field_.mean()) / (field_.std() + 1e-12)


def _lines_mask(shape: tuple[int, int], pts: np.ndarray, width: float) -> np.ndarray:
    """Pixels within ``width / 2`` of a polyline through ``pts`` (``(n, 2)`` row, col)."""
    canvas = np.ones(shape, dtype=bool)
    dense = []
    for a, b in itertools.pairwise(pts):
        n = int(np.ceil(np.abs(b - a).max())) + 1
        dense.append(np.linspace(a, b, n))
    p = np.round(np.concatenate(dense)).astype(int)
    keep = (p[:, 0] >= 0) & (p[:, 0] < shape[0]) & (p[:, 1] >= 0) & (p[:, 1] < shape[1])
    canvas[p[keep, 0], p[keep, 1]] = False
    if canvas.all():
        return np.zeros(shape, dtype=bool)
    return ndimage.distance_transform_edt(canvas) <= width / 2


def land_cover_map(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, dict]:
    """Draw a procedural land-cover map (class indices) and its parcel/texture layers."""
    shape = (height, width)
    frac = rng.dirichlet([3.0, 2.0, 1.0])  # fields, forest, bare
    scale = rng.uniform(8, 24)
    lc = np.full(shape, FIELDS, dtype=np.uint8)
    forest_field = noise_field(rng, shape, scale)
    # threshold from a reference standard field, so the forest share follows frac[1] on average
    forest = forest_field > np.quantile(noise_field(rng, (64, 64), 1), 1 - frac[1])
    bare_field = noise_field(rng, shape, scale)
    lc[forest] = FOREST
    lc[(bare_field > np.quantile(bare_field, 1 - frac[2] * 0.8)) & ~forest] = BARE
    # field parcels: a jittered rectangular grid, one id per parcel
    ph, pw = rng.integers(6, 20), rng.integers(8, 28)
    col_shift = rng.integers(0, ph, size=width // pw + 2)
    rows, cols = np.mgrid[0:height, 0:width]
    pcol = cols // pw
    parcels = ((rows + col_shift[pcol]) // ph) * (width // pw + 2) + pcol
    # lakes
    lake = noise_field(rng, shape, rng.uniform(6, 16))
    lc[lake > np.quantile(lake, 1 - rng.uniform(0.01, 0.10))] = WATER
    # roads: a few near-straight lines across the map; settlements along them
    road = np.zeros(shape, dtype=bool)
    for _ in range(rng.integers(1, 5)):
        if rng.random() < 0.5:
            r0, r1 = rng.uniform(0, height, 2)
            pts = np.array(
                [[r0, -5], [(r0 + r1) / 2 + rng.normal(0, 5), width / 2], [r1, width + 5]]
            )
        else:
            c0, c1 = rng.uniform(0, width, 2)
            pts = np.array(
                [[-5, c0], [height / 2, (c0 + c1) / 2 + rng.normal(0, 5)], [height + 5, c1]]
            )
        road |= _lines_mask(shape, pts, rng.uniform(1.5, 3.5))
    near = ndimage.distance_transform_edt(~road) < rng.uniform(6, 18)
    town = noise_field(rng, shape, rng.uniform(4, 10))
    lc[near & (town > np.quantile(town, 1 - rng.uniform(0.15, 0.5)))] = SETTLEMENT
    # rivers: meandering random walks from one edge to the opposite one
    for _ in range(rng.poisson(0.8)):
        n = 40
        t = np.linspace(-5, max(height, width) + 5, n)
        wiggle = np.cumsum(rng.normal(0, 2.5, n))
        if rng.random() < 0.5:
            pts = np.stack([rng.uniform(0, height) + wiggle, t * width / max(height, width)], 1)
        else:
            pts = np.stack([t * height / max(height, width), rng.uniform(0, width) + wiggle], 1)
        lc[_lines_mask(shape, pts, rng.uniform(2.0, 5.0))] = WATER
    lc[road] = ROAD
    return lc, {"parcels": parcels}
