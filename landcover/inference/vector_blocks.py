"""Polygons of a class map strip by strip, in memory bounded by the strip, seams merged.

Vectorising a whole map at once holds the map, a label image and every polygon (a 4096²
speckled map: +2.5 GB and +95 s in ``landcover bench predict``). Here the map is read in
strips of full width, about :data:`BLOCK_PIXELS` pixels and at least :data:`MIN_ROWS`
rows each (a windowed read of the class map GeoTIFF, or slices of an array). Each strip
is polygonised on its own (GDAL's polygonizer, :func:`rasterio.features.shapes`,
4-connectivity) and its polygons that touch no seam are complete: they leave at once, as
a batch, for the writer. A polygon cut by a seam is held back until its parts below the
seam are known; parts are joined where a pixel of the strip's last row and the pixel
under it in the next strip's first row have the same class (4-connectivity across the
seam), and the parts are unioned when the group touches the next seam no more. The
result is the whole-raster polygonisation: the same regions, the same pixel count per
region (tested).

Simplification (GEOS coverage simplification, :func:`shapely.coverage_simplify`) runs on
each strip's polygons as one coverage with the strip's outline fixed (the raster's frame
and the seams are straight lines), nodata regions included so that the edges along
nodata are simplified like any other shared edge. Both sides of a seam keep a vertex at
every pixel corner of the seam (segmentised first, see :mod:`landcover.inference.vectorize`),
so the parts meet exactly and their union is exact (integer pixel coordinates).

Memory: one strip (class map, one label image, the strip's polygons), the polygons cut by
the current seam, and the largest polygon (a feature is written whole). Time: linear in
pixels plus polygons.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import rasterio.features
import shapely
from affine import Affine
from scipy import ndimage

#: Pixels per strip (rows = BLOCK_PIXELS // width, at least :data:`MIN_ROWS`): 256 kpx,
#: about 70 MB at the peak for a speckled map (``landcover bench predict``).
BLOCK_PIXELS = 1 << 18
#: Fewest rows per strip (wider maps get wider strips: fewer seams to join).
MIN_ROWS = 64

#: ``read(row0, rows)`` -> class map strip ``(rows, width)`` uint8 and, optionally, the
#: probability of each pixel's class ``(rows, width)`` (for mean probabilities).
StripReader = Callable[[int, int], tuple[np.ndarray, np.ndarray | None]]


@dataclass(frozen=True)
class PolygonBatch:
    """Complete polygons in pixel coordinates (x = column, y = row of the whole map).

    Attributes:
        geoms: Shapely polygons.
        values: Class value of each polygon (the class map's value).
        pixels: Pixel count of each polygon (before simplification).
        prob_sums: Sum of the class probability over each polygon's pixels, or ``None``.
    """

    geoms: np.ndarray
    values: np.ndarray
    pixels: np.ndarray
    prob_sums: np.ndarray | None

    def __len__(self) -> int:
        return len(self.geoms)


@dataclass
class _Group:
    """A region cut by a seam: its parts so far."""

    value: int
    parts: list[object] = field(default_factory=list)
    pixels: int = 0
    prob_sum: float = 0.0


def strip_rows(width: int, block_pixels: int = BLOCK_PIXELS) -> int:
    """Rows of a strip of ``width`` pixels: about ``block_pixels`` pixels, >= MIN_ROWS."""
    return max(MIN_ROWS, block_pixels // max(width, 1))


def _labels(cls: np.ndarray, nodata: int) -> tuple[np.ndarray, int]:
    """4-connected regions of each class (nodata: 0) numbered 1..n over the strip."""
    lab = np.zeros(cls.shape, np.int32)
    n = 0
    for v in np.unique(cls):
        if v == nodata:
            continue
        region, k = ndimage.label(cls == v)  # the default structure is 4-connected
        hit = region > 0
        lab[hit] = region[hit] + n
        n += k
    return lab, n


def _strip(
    cls: np.ndarray, prob: np.ndarray | None, row0: int, nodata: int, simplify: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Polygons of one strip (pixel coordinates), their values, pixels, sums, label LUT."""
    shapes = rasterio.features.shapes(cls, connectivity=4, transform=Affine.translation(0, row0))
    geoms, values = [], []
    for g, v in shapes:
        geoms.append(shapely.geometry.shape(g))
        values.append(int(v))
    cover = np.array(geoms, dtype=object)
    vals = np.array(values, dtype=np.int64)
    keep = vals != nodata
    lab, n = _labels(cls, nodata)
    # each polygon's region: the pixel under a point inside it (GEOS' interior point lies
    # strictly inside, off the pixel rows' lines)
    xy = shapely.get_coordinates(shapely.point_on_surface(cover[keep]))
    region = lab[np.floor(xy[:, 1]).astype(np.int64) - row0, np.floor(xy[:, 0]).astype(np.int64)]
    lut = np.full(n + 1, -1, np.int64)
    lut[region] = np.arange(len(region))
    if len(region) != n or (lut[1:] < 0).any():
        raise RuntimeError("polygons and connected regions of a strip do not match")
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    sums = None
    if prob is not None:
        sums = np.bincount(lab.ravel(), weights=prob.ravel().astype(np.float64), minlength=n + 1)
        sums = sums[region]
    if simplify > 0 and len(cover):
        # a vertex at every pixel corner nodes the coverage (GDAL's outlines have vertices
        # only where they turn) and makes both sides of a seam meet vertex for vertex
        cover = shapely.coverage_simplify(shapely.segmentize(cover, 1.0), simplify,
                                          simplify_boundary=False)  # fmt: skip
    return cover[keep], vals[keep], counts[region], sums, lut[lab[[0, -1]]]


def block_polygons(
    read: StripReader,
    height: int,
    width: int,
    *,
    nodata: int = 255,
    simplify: float = 0.0,
    rows: int | None = None,
) -> Iterator[PolygonBatch]:
    """Polygons of a ``height`` x ``width`` class map, read strip by strip.

    Args:
        read: Reads ``rows`` rows from ``row0`` (:data:`StripReader`).
        height: Rows of the map.
        width: Columns of the map.
        nodata: Class value without polygons.
        simplify: Coverage simplification tolerance in pixels (0: exact outlines).
        rows: Rows per strip (default :func:`strip_rows`).

    Yields:
        Complete polygons, one batch per strip (the last batch also ends the polygons
        still open), in pixel coordinates of the whole map.
    """
    rows = rows or strip_rows(width)
    if rows < 1:
        raise ValueError(f"rows per strip must be >= 1; got {rows}")
    pending: dict[int, _Group] = {}
    above: np.ndarray | None = None  # group id per column of the last row read (-1: none)
    above_cls: np.ndarray | None = None
    next_id = 0
    for row0 in range(0, height, rows):
        n = min(rows, height - row0)
        last = row0 + n >= height
        cls, prob = read(row0, n)
        cls = np.ascontiguousarray(cls, dtype=np.uint8)
        geoms, vals, pix, sums, edges = _strip(cls, prob, row0, nodata, simplify)
        base = next_id
        ids = np.arange(base, base + len(geoms))
        next_id += len(geoms)
        first_row, last_row = edges
        # parts joined across the seam above: same class, both sides have a polygon
        pairs = np.zeros((0, 2), np.int64)
        if above is not None:
            hit = (above >= 0) & (first_row >= 0) & (above_cls == cls[0])
            pairs = np.unique(np.c_[above[hit], ids[first_row[hit]]], axis=0)
        bottom = np.zeros(len(geoms), bool)
        if not last:
            bottom[last_row[last_row >= 0]] = True
        joined = np.zeros(len(geoms), bool)
        joined[pairs[:, 1] - base] = True
        alone = ~bottom & ~joined  # complete within this strip
        out_g = [geoms[alone]]
        out_v, out_p = [vals[alone]], [pix[alone]]
        out_s = [sums[alone]] if sums is not None else None
        # the groups: parts of this strip on a seam, and the groups from above
        for i in np.flatnonzero(~alone):
            pending[int(ids[i])] = _Group(int(vals[i]), [geoms[i]], int(pix[i]),
                                          0.0 if sums is None else float(sums[i]))  # fmt: skip
        parent: dict[int, int] = {}
        for a, b in pairs.tolist():
            ra, rb = _find(parent, a), _find(parent, b)
            if ra != rb:
                parent[rb] = ra
        for gid in [g for g in pending if _find(parent, g) != g]:
            grp, root = pending.pop(gid), pending[_find(parent, gid)]
            root.parts += grp.parts
            root.pixels += grp.pixels
            root.prob_sum += grp.prob_sum
        # still open: a group with a part on the seam below
        root_of_part = {int(ids[i]): _find(parent, int(ids[i])) for i in np.flatnonzero(bottom)}
        open_ids = set(root_of_part.values())
        done = [g for g in pending if g not in open_ids]
        if done:
            groups = [pending.pop(g) for g in done]
            out_g.append(np.array([_union(g.parts) for g in groups], dtype=object))
            out_v.append(np.array([g.value for g in groups], np.int64))
            out_p.append(np.array([g.pixels for g in groups], np.int64))
            if out_s is not None:
                out_s.append(np.array([g.prob_sum for g in groups], np.float64))
        # group id per column of the seam below: the root of the part above it
        if not last:
            above = np.full(width, -1, np.int64)
            has = last_row >= 0
            above[has] = [root_of_part[int(ids[i])] for i in last_row[has]]
            above_cls = cls[-1].copy()
        batch = PolygonBatch(np.concatenate(out_g), np.concatenate(out_v),
                             np.concatenate(out_p),
                             None if out_s is None else np.concatenate(out_s))  # fmt: skip
        if len(batch):
            yield batch
    if pending:  # cannot happen: the last strip closes every group
        raise RuntimeError(f"{len(pending)} polygons left open after the last strip")


def _find(parent: dict[int, int], a: int) -> int:
    """Root of ``a`` in a union-find forest (absent: its own root)."""
    while parent.get(a, a) != a:
        parent[a] = parent.get(parent[a], parent[a])
        a = parent[a]
    return a


def _union(parts: list[object]) -> object:
    """One region from its parts (exact: integer pixel coordinates, parts meet at seams)."""
    if len(parts) == 1:
        return parts[0]
    return shapely.union_all(np.array(parts, dtype=object))
