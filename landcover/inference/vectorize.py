"""Editable polygons of a class map: minimum mapping unit, simplification, attributes.

A per-pixel class map vectorised as is gives one polygon per speckle (a 1024² map of an
untrained model: ~13k polygons), a layer nobody can edit. The product's vector output
therefore follows the usual map-generalisation recipe:

1. **Minimum mapping unit**: connected regions smaller than ``min_area`` pixels (or m²)
   are merged into their largest neighbour by GDAL's sieve filter
   (:func:`rasterio.features.sieve`, 4-connectivity; nodata is never grown into).
2. **Polygons** of the sieved map: GDAL's polygonizer (:func:`rasterio.features.shapes`,
   4-connectivity, holes kept).
3. **Simplification** of the polygons as one coverage, so that neighbours keep sharing
   their edges (no gaps, no overlaps): GEOS' coverage simplification
   (:func:`shapely.coverage_simplify`, Visvalingam & Whyatt 1993 area-based line
   generalisation) with a tolerance of ``simplify`` pixels. GDAL's outlines have vertices
   only where they turn, so a neighbour's corner can lie inside an edge; such a coverage
   is not *noded* and GEOS then leaves gaps and overlaps. The outlines are therefore
   segmentised to a vertex at every pixel corner first (in pixel coordinates, exact in
   floating point) and moved into the CRS only after simplification.

Attributes of every polygon: ``class_id`` (the map's value of the class: the class file's
value, or the index for maps of indices; :mod:`landcover.geo.map_values`), ``class_name``,
``color``, ``area_m2`` (pixels
x pixel area before simplification; ``null`` without a CRS) and ``mean_prob`` (mean
probability of the polygon's class over its pixels, when probabilities are given).
GeoJSON is written in WGS 84 (RFC 7946; pixel coordinates for rasters without a CRS,
which GeoJSON cannot mark as such: readers take them for WGS 84, so ``landcover predict``
refuses ``--geojson`` there and points to ``--gpkg``), GeoPackage (:mod:`pyogrio`, GDAL's
OGR; version 1.2, with its QGIS style) in the raster's own CRS, or with no spatial
reference and QGIS' placement of an unreferenced raster (y = -row).

Memory: the class map is read whole (1 byte per pixel) plus a 4-byte label image and, for
``mean_prob``, one float per pixel.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio.features
import rasterio.warp
import shapely
from affine import Affine
from rasterio.crs import CRS

from landcover.geo.classes import ClassScheme
from landcover.geo.map_values import index_lut
from landcover.geo.raster import open_raster

WGS84 = "EPSG:4326"
#: GeoPackage version written: 1.2 opens without warnings in GDAL 3.6 / QGIS 3.22.
GPKG_VERSION = "1.2"
#: QGIS places a raster without CRS and geotransform at x in [0, W], y in [-H, 0].
QGIS_UNREFERENCED = Affine(1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
_EARTH_M_PER_DEG = 111_320.0


@dataclass(frozen=True)
class VectorOptions:
    """Generalisation of the vector output.

    Attributes:
        min_area_px: Minimum mapping unit in pixels (regions smaller are merged into a
            neighbour). Ignored when ``min_area_m2`` is set.
        min_area_m2: Minimum mapping unit in square metres (needs a projected CRS).
        simplify: Simplification tolerance in pixels (0: exact pixel outlines).
    """

    min_area_px: int = 16
    min_area_m2: float | None = None
    simplify: float = 1.0

    def __post_init__(self) -> None:
        if self.min_area_px < 0 or (self.min_area_m2 is not None and self.min_area_m2 < 0):
            raise ValueError("the minimum mapping unit must be >= 0")
        if self.simplify < 0:
            raise ValueError(f"the simplification tolerance must be >= 0; got {self.simplify}")

    def threshold_px(self, pixel_area_m2: float | None) -> int:
        """The sieve threshold in pixels for rasters whose pixels cover ``pixel_area_m2``."""
        if self.min_area_m2 is None:
            return self.min_area_px
        if not pixel_area_m2:
            raise ValueError("--min-area-m2 needs a raster with a projected CRS; give "
                             "--min-area (pixels) instead")  # fmt: skip
        return math.ceil(self.min_area_m2 / pixel_area_m2)


#: Exact pixel outlines, every speckle kept (the map as it is).
EXACT = VectorOptions(min_area_px=0, simplify=0.0)


def pixel_area_m2(transform: Affine, crs: CRS | None, height: int) -> float | None:
    """Ground area of one pixel in m² (at the raster's middle row for geographic CRSs)."""
    if crs is None:
        return None
    area = abs(transform.a * transform.e - transform.b * transform.d)
    if crs.is_geographic:
        lat = (transform * (0, height / 2))[1]
        return area * _EARTH_M_PER_DEG**2 * math.cos(math.radians(lat))
    return area * crs.linear_units_factor[1] ** 2


def sieve_map(classes: np.ndarray, size: int, nodata: int = 255) -> np.ndarray:
    """The class map with regions smaller than ``size`` pixels merged into a neighbour.

    GDAL's sieve filter (4-connected regions, each merged into its largest neighbour);
    nodata pixels neither grow nor are grown into. Returns a new uint8 array. A region
    merges only into a neighbour of at least ``size`` pixels, so a map smaller than the
    minimum mapping unit stays as it is (GDAL refuses a ``size`` above the pixel count).
    """
    arr = np.array(classes, dtype=np.uint8, order="C")
    size = min(size, arr.size)
    if size > 1:
        valid = arr != nodata
        arr = rasterio.features.sieve(arr, size=size, mask=valid, connectivity=4)
        arr[~valid] = nodata
    return arr


def polygons(
    classes: np.ndarray,
    scheme: ClassScheme,
    *,
    transform: Affine | None = None,
    crs: CRS | None = None,
    nodata: int = 255,
    options: VectorOptions = VectorOptions(),
    probabilities: np.ndarray | None = None,
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Generalised polygons of a class map and their attributes.

    Args:
        classes: ``(H, W)`` class map holding ``scheme.raw_values()`` (the values
            :func:`~landcover.geo.map_values.map_scheme` chose); ``nodata`` pixels get no
            polygon.
        scheme: Names, colours and map values of the classes.
        transform: Pixel -> CRS transform (identity: pixel coordinates).
        crs: CRS of ``transform`` (``None``: no areas).
        nodata: Class value of pixels without data.
        options: Minimum mapping unit and simplification.
        probabilities: ``(K, H, W)`` class probabilities (any float or uint8 scale
            0..1 / 0..255 handled by the caller) for ``mean_prob``.

    Returns:
        Shapely polygons (in the raster's CRS) and one attribute dict per polygon.
    """
    transform = transform or Affine.identity()
    px_area = pixel_area_m2(transform, crs, classes.shape[0])
    arr = sieve_map(classes, options.threshold_px(px_area), nodata)
    valid = arr != nodata
    # polygons in pixel coordinates (integer corners, exact in floating point); to the CRS last
    shapes = list(rasterio.features.shapes(arr, mask=valid, connectivity=4))
    if not shapes:
        return [], []
    geoms = [shapely.geometry.shape(g) for g, _ in shapes]
    values = [int(v) for _, v in shapes]
    labels = rasterio.features.rasterize(
        ((g, i + 1) for i, g in enumerate(geoms)), out_shape=arr.shape, fill=0, dtype="int32"
    )
    counts = np.bincount(labels.ravel(), minlength=len(geoms) + 1)[1:]
    to_index = index_lut(scheme, nodata)
    means: np.ndarray | None = None
    if probabilities is not None:
        index = np.minimum(to_index[arr], len(probabilities) - 1)
        p = np.take_along_axis(probabilities, index[None], 0)[0]
        sums = np.bincount(labels.ravel(), weights=p.ravel().astype(np.float64),
                           minlength=len(geoms) + 1)[1:]  # fmt: skip
        means = sums / np.maximum(counts, 1)
    cover = np.array(geoms, dtype=object)
    if options.simplify > 0:
        # GDAL's outlines have vertices only where they turn, so a neighbour's corner may
        # lie inside an edge: the coverage is not noded, and GEOS' coverage simplification
        # then leaves gaps and overlaps. A vertex at every pixel corner nodes it.
        cover = shapely.coverage_simplify(shapely.segmentize(cover, 1.0), options.simplify,
                                          simplify_boundary=True)  # fmt: skip
    if transform != Affine.identity():
        t = transform
        cover = shapely.transform(
            cover,
            lambda xy: np.c_[
                t.a * xy[:, 0] + t.b * xy[:, 1] + t.c, t.d * xy[:, 0] + t.e * xy[:, 1] + t.f
            ],
        )
    geoms = list(cover)
    attrs = []
    for i, value in enumerate(values):
        idx = int(to_index[value])
        r, g, b = scheme.colors[idx] if idx < len(scheme.colors) else (0, 0, 0)
        attrs.append({
            "class_id": value,
            "class_index": idx,  # the class's position in the class file (0..n-1)
            "class_name": scheme.names[idx] if idx < scheme.num_classes else str(value),
            "color": f"#{r:02x}{g:02x}{b:02x}",
            "area_m2": None if px_area is None else round(float(counts[i]) * px_area, 3),
            "mean_prob": None if means is None else round(float(means[i]), 5),
        })  # fmt: skip
    return geoms, attrs


def _to_wgs84(geoms: list[Any], crs: CRS) -> list[Any]:
    """Reproject every vertex of every polygon with one vectorised transform."""
    coords = shapely.get_coordinates(np.array(geoms, dtype=object))
    if not len(coords):
        return geoms
    lon, lat = rasterio.warp.transform(crs, WGS84, coords[:, 0].tolist(), coords[:, 1].tolist())
    return list(shapely.set_coordinates(np.array(geoms, dtype=object), np.c_[lon, lat]))


def feature_collection(
    classes: np.ndarray,
    scheme: ClassScheme,
    *,
    transform: Affine | None = None,
    crs: CRS | None = None,
    nodata: int = 255,
    to_wgs84: bool = True,
    options: VectorOptions = VectorOptions(),
    probabilities: np.ndarray | None = None,
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of :func:`polygons`."""
    geoms, attrs = polygons(classes, scheme, transform=transform, crs=crs, nodata=nodata,
                            options=options, probabilities=probabilities)  # fmt: skip
    if to_wgs84 and crs is not None:
        geoms = _to_wgs84(geoms, crs)
    if geoms:  # RFC 7946 right-hand rule: exteriors counter-clockwise, holes clockwise
        geoms = list(shapely.orient_polygons(np.array(geoms, dtype=object), exterior_cw=False))
    features = [{"type": "Feature", "geometry": shapely.geometry.mapping(g), "properties": a}
                for g, a in zip(geoms, attrs)]  # fmt: skip
    if crs is not None:
        system = WGS84 if to_wgs84 else crs.to_string()
    else:  # no CRS: the raster's own grid coordinates (pixels without a geotransform)
        plain = transform is None or transform == Affine.identity()
        system = "pixel (column, row)" if plain else "the raster's coordinates (no CRS)"
    return {"type": "FeatureCollection", "coordinate_system": system, "features": features}


def _read(class_map: str | Path, probabilities: str | Path | None) -> tuple[Any, ...]:
    with open_raster(class_map) as src:
        arr, transform, crs = src.read(1), src.transform, src.crs
    probs = None
    if probabilities is not None:
        with open_raster(probabilities) as src:
            probs = src.read()
        if probs.dtype == np.uint8:
            probs = probs.astype(np.float32) / 255.0
        probs = np.nan_to_num(probs.astype(np.float32, copy=False), nan=0.0)
    return arr, transform, crs, probs


def _atomic(out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out, out.with_name(f".{out.name}.{os.getpid()}.tmp{out.suffix}")


def write_geojson(
    class_map: str | Path,
    out: str | Path,
    scheme: ClassScheme,
    *,
    nodata: int = 255,
    to_wgs84: bool = True,
    options: VectorOptions = VectorOptions(),
    probabilities: str | Path | None = None,
) -> Path:
    """Polygonize a class-map GeoTIFF into a GeoJSON file (written atomically).

    Args:
        class_map: uint8 class map (as written by ``predict_raster``).
        out: Output ``.geojson`` path.
        scheme: Class names and colours.
        nodata: Class value of pixels without data.
        to_wgs84: Reproject to WGS 84 (RFC 7946) when the raster has a CRS.
        options: Minimum mapping unit and simplification (:data:`EXACT`: none).
        probabilities: Per-class probability raster for ``mean_prob``.

    Returns:
        ``out``.
    """
    arr, transform, crs, probs = _read(class_map, probabilities)
    fc = feature_collection(arr, scheme, transform=transform, crs=crs, nodata=nodata,
                            to_wgs84=to_wgs84, options=options, probabilities=probs)  # fmt: skip
    out, tmp = _atomic(out)
    try:
        tmp.write_text(json.dumps(fc))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def write_gpkg(
    class_map: str | Path,
    out: str | Path,
    scheme: ClassScheme,
    *,
    nodata: int = 255,
    options: VectorOptions = VectorOptions(),
    probabilities: str | Path | None = None,
    layer: str = "landcover",
) -> Path:
    """Polygonize a class-map GeoTIFF into a GeoPackage layer in the raster's CRS.

    The GeoPackage is version :data:`GPKG_VERSION` (GDAL >= 3.6 writes 1.4 by default,
    which GDAL 3.6 / QGIS 3.22 open with a "may only be partially supported" warning)
    and carries its QGIS style (:func:`landcover.geo.vector_style.add_gpkg_style`). A
    raster without CRS and geotransform (a plain JPEG) gets polygons where QGIS draws it
    (x = column, y = -row) and a layer without a spatial reference.
    """
    import pyogrio.raw

    from landcover.geo.vector_style import add_gpkg_style

    arr, transform, crs, probs = _read(class_map, probabilities)
    if crs is None and transform == Affine.identity():
        transform = QGIS_UNREFERENCED  # where QGIS draws such a raster
    geoms, attrs = polygons(arr, scheme, transform=transform, crs=crs, nodata=nodata,
                            options=options, probabilities=probs)  # fmt: skip
    names = ["class_id", "class_name", "color", "area_m2", "mean_prob"]
    columns = [
        np.array([a["class_id"] for a in attrs], dtype=np.int32),
        np.array([a["class_name"] for a in attrs], dtype=object),
        np.array([a["color"] for a in attrs], dtype=object),
        np.array([np.nan if a["area_m2"] is None else a["area_m2"] for a in attrs], np.float64),
        np.array([np.nan if a["mean_prob"] is None else a["mean_prob"] for a in attrs],
                 np.float64),
    ]  # fmt: skip
    wkb = shapely.to_wkb(np.array(geoms, dtype=object)) if geoms else np.array([], dtype=object)
    out, tmp = _atomic(out)
    try:
        with warnings.catch_warnings():  # a raster without a CRS gives a layer without one
            warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)
            pyogrio.raw.write(
                str(tmp), wkb, columns, names, driver="GPKG", layer=layer,
                geometry_type="MultiPolygon",
                crs=crs.to_wkt() if crs is not None else None, promote_to_multi=True,
                dataset_options={"VERSION": GPKG_VERSION},
            )  # fmt: skip
        add_gpkg_style(tmp, layer, scheme, geometry="geom")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
