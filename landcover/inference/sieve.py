"""Minimum mapping unit: an iterative GDAL sieve, on a whole map or strip by strip.

GDAL's sieve (:func:`rasterio.features.sieve`, 4-connectivity) merges a connected region
smaller than the threshold into its largest neighbour *if that neighbour reaches the
threshold*: a small region among small ones stays. Once, at 16 px, it leaves speckle
nearly whole: a synthetic 1024² map of pixel noise over smooth class fields keeps 31,339
of its 327,733 regions, 29,357 of them below 16 px. So the minimum mapping unit sieves
at thresholds doubling up to it (2, 4, 8, 16; :func:`sieve_steps`): single pixels join
their neighbours first, the grown regions then absorb the next ones. The same map then
keeps 3,413 regions, none below 16 px, and agrees better with the unsieved map (63.9 %
of the pixels unchanged against 59.6 %).

GDAL's sieve holds every region of the map (+274 MB for a speckled 4096² map), so the
vector output sieves strip by strip (:func:`sieved_strips`): each strip is sieved with
``2 * size`` rows above and below it (its halo) and only the strip is kept. A region of
fewer than ``size`` pixels spans fewer than ``size`` rows, so a small region that
touches the strip lies whole in the window with its neighbourhood, and a region that
leaves the window has at least ``size`` pixels in it: the decisions near the strip are
the whole map's, except which neighbour a region joins when its neighbours are cut by
the window, and a small region cut by a seam may join one neighbour above the seam and
another below. On a speckled 512² map, strip and whole-map sieves agree on 99.98 % of the
pixels with 256-row strips, on 99.7 % with 16-row strips
(``tests/inference/test_vector_blocks.py``).

Memory: ``(rows + 4 * size) * width`` bytes per strip, whatever the map's size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import rasterio.features

#: ``read(row0, rows)`` -> ``(rows, width)`` uint8 classes.
ClassReader = Callable[[int, int], np.ndarray]


def sieve_steps(size: int) -> list[int]:
    """Thresholds of the iterative sieve: 2, 4, 8, ... below ``size``, then ``size``."""
    steps, s = [], 2
    while s < size:
        steps.append(s)
        s *= 2
    return [*steps, size] if size > 1 else []


def sieve_map(classes: np.ndarray, size: int, nodata: int = 255) -> np.ndarray:
    """The class map with regions smaller than ``size`` pixels merged into neighbours.

    GDAL's sieve filter (4-connected regions, each merged into its largest neighbour of
    at least the threshold) at thresholds doubling up to ``size``
    (:func:`sieve_steps`); nodata pixels neither grow nor are grown into. Returns a new
    uint8 array. A map of at most ``size`` pixels stays as it is (no region could reach
    the minimum mapping unit; GDAL refuses a threshold above the pixel count).
    """
    arr = np.array(classes, dtype=np.uint8, order="C")
    if size <= 1 or size >= arr.size:
        return arr
    valid = arr != nodata
    for step in sieve_steps(size):
        arr = rasterio.features.sieve(arr, size=step, mask=valid, connectivity=4)
    arr[~valid] = nodata
    return arr


def sieved_strips(read: ClassReader, height: int, size: int, nodata: int = 255) -> ClassReader:
    """A reader of the map sieved at ``size`` pixels, strip by strip (see the module doc).

    Args:
        read: ``read(row0, rows)`` -> ``(rows, width)`` classes of the unsieved map.
        height: Rows of the map.
        size: Minimum mapping unit in pixels (0 or 1: ``read`` itself).
        nodata: Class value of pixels without data.
    """
    if size <= 1:
        return read

    def sieved(row0: int, n: int) -> np.ndarray:
        top, bottom = max(0, row0 - 2 * size), min(height, row0 + n + 2 * size)
        window = sieve_map(read(top, bottom - top), size, nodata)
        return window[row0 - top : row0 - top + n]

    return sieved
