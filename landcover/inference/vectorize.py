"""Editable polygons of a class map: minimum mapping unit, simplification, attributes.

A per-pixel class map vectorised as is gives one polygon per speckle (a 1024² map of an
untrained model: ~13k polygons), a layer nobody can edit. The product's vector output
therefore follows the usual map-generalisation recipe:

1. **Minimum mapping unit**: connected regions smaller than ``min_area`` pixels (or m²)
   are merged into their largest neighbour by GDAL's sieve filter
   (:func:`rasterio.features.sieve`, 4-connectivity; nodata is never grown into), strip
   by strip with a halo of ``min_area`` rows (:mod:`landcover.inference.sieve`). The
   raster map itself stays as predicted.
2. **Polygons** of the sieved map: GDAL's polygonizer (:func:`rasterio.features.shapes`,
   4-connectivity, holes kept), strip by strip with the polygons cut by the seams joined
   again (:mod:`landcover.inference.vector_blocks`): the whole map's polygons.
3. **Simplification** of the polygons as one coverage (per strip, the strip's outline
   fixed, see :mod:`~landcover.inference.vector_blocks`), so that neighbours keep sharing
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
GeoJSON is written in WGS 84 (RFC 7946), GeoPackage (:mod:`pyogrio`, GDAL's OGR; version
1.2, with its QGIS style) in the raster's own CRS. A raster without a CRS gives polygons
in its own coordinates, and a plain image (no geotransform either: a JPEG) in QGIS'
placement of an unreferenced raster (x = column, y = -row), both files alike: the
GeoPackage layer has no spatial reference (GDAL's "Undefined SRS"), the GeoJSON a ``crs``
member (GeoJSON 2008's named CRS, which GDAL and so QGIS still read; RFC 7946 readers
ignore it) naming an undefined local CRS, :data:`UNDEFINED_CRS`: without it GDAL and QGIS
read every GeoJSON as WGS 84, ``"crs": null`` included (GDAL 3.6).

Memory and time: the map is read in strips of about 256 kpx (plus the sieve's halo) and
features stream to the files (:mod:`landcover.inference.vector_writers`), so memory does
not grow with the map (the polygons cut by the current seam and the largest polygon
aside) and time grows linearly with pixels and polygons; ``landcover bench predict``
measures both (JSON ``vector_cost``). GeoJSON and GeoPackage asked together are written
in one pass (:func:`write_vectors`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.features
import rasterio.warp
import rasterio.windows
import shapely
from affine import Affine
from rasterio.crs import CRS

from landcover.geo.classes import ClassScheme
from landcover.geo.map_values import index_lut
from landcover.geo.raster import open_raster
from landcover.inference.sieve import sieve_map, sieved_strips  # noqa: F401 (re-exported)
from landcover.inference.vector_blocks import PolygonBatch, StripReader, block_polygons
from landcover.inference.vector_writers import GPKG_FIELDS

WGS84 = "EPSG:4326"
#: GeoPackage version written: 1.2 opens without warnings in GDAL 3.6 / QGIS 3.22.
GPKG_VERSION = "1.2"
#: QGIS places a raster without CRS and geotransform at x in [0, W], y in [-H, 0].
QGIS_UNREFERENCED = Affine(1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
#: The GeoJSON ``crs`` member of polygons without a CRS: a local CRS GDAL reads as
#: "Undefined" (QGIS 3.22: no authority, not geographic), not WGS 84.
UNDEFINED_CRS = 'LOCAL_CS["Undefined"]'
_EARTH_M_PER_DEG = 111_320.0
#: GDAL's block cache while vectorising (MB): strips are read once, so a cache only has to
#: hold a strip; GDAL's default (5 % of the RAM) kept every block of the class map and the
#: probabilities read (+97 MB for a 4096² map's 5 uint8 probabilities, 4x for float32).
GDAL_CACHE_MB = 64


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


def _attributes(
    batch: PolygonBatch, scheme: ClassScheme, to_index: np.ndarray, px_area: float | None
) -> list[dict[str, Any]]:
    """The attribute dict of each polygon of a batch."""
    means = None
    if batch.prob_sums is not None:
        means = batch.prob_sums / np.maximum(batch.pixels, 1)
    attrs = []
    for i, value in enumerate(batch.values.tolist()):
        idx = int(to_index[value])
        r, g, b = scheme.colors[idx] if idx < len(scheme.colors) else (0, 0, 0)
        attrs.append({
            "class_id": value,
            "class_index": idx,  # the class's position in the class file (0..n-1)
            "class_name": scheme.names[idx] if idx < scheme.num_classes else str(value),
            "color": f"#{r:02x}{g:02x}{b:02x}",
            "area_m2": None if px_area is None else round(float(batch.pixels[i]) * px_area, 3),
            "mean_prob": None if means is None else round(float(means[i]), 5),
        })  # fmt: skip
    return attrs


def _to_crs(geoms: np.ndarray, transform: Affine) -> np.ndarray:
    """Pixel coordinates (column, row) -> the raster's CRS."""
    if transform == Affine.identity():
        return geoms
    t = transform
    return shapely.transform(
        geoms,
        lambda xy: np.c_[
            t.a * xy[:, 0] + t.b * xy[:, 1] + t.c, t.d * xy[:, 0] + t.e * xy[:, 1] + t.f
        ],
    )


def _class_prob(probabilities: np.ndarray, cls: np.ndarray, to_index: np.ndarray) -> np.ndarray:
    """Probability of each pixel's class from ``(K, rows, W)`` probabilities."""
    index = np.minimum(to_index[cls], len(probabilities) - 1)
    return np.take_along_axis(probabilities, index[None], 0)[0]


def polygons(
    classes: np.ndarray,
    scheme: ClassScheme,
    *,
    transform: Affine | None = None,
    crs: CRS | None = None,
    nodata: int = 255,
    options: VectorOptions = VectorOptions(),
    probabilities: np.ndarray | None = None,
    rows: int | None = None,
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Generalised polygons of a class map in memory and their attributes.

    The same polygons as the files of :func:`write_vectors` (the same strip-wise
    vectoriser); for maps that fit in memory (the service's, tests).

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
        rows: Rows per strip (default: about :data:`~landcover.inference.vector_blocks.
            BLOCK_PIXELS` pixels per strip).

    Returns:
        Shapely polygons (in the raster's CRS) and one attribute dict per polygon.
    """
    transform = transform or Affine.identity()
    height = classes.shape[0]
    px_area = pixel_area_m2(transform, crs, height)
    raw = np.asarray(classes, dtype=np.uint8)
    size = min(options.threshold_px(px_area), raw.size)
    sieved = sieved_strips(lambda row0, n: raw[row0 : row0 + n], height, size, nodata)
    to_index = index_lut(scheme, nodata)

    def read(row0: int, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        cls = sieved(row0, n)
        if probabilities is None:
            return cls, None
        return cls, _class_prob(probabilities[:, row0 : row0 + n], cls, to_index)

    geoms: list[Any] = []
    attrs: list[dict[str, Any]] = []
    for batch in block_polygons(read, *raw.shape, nodata=nodata, simplify=options.simplify,
                                rows=rows):  # fmt: skip
        geoms.extend(_to_crs(batch.geoms, transform))
        attrs.extend(_attributes(batch, scheme, to_index, px_area))
    return geoms, attrs


def _to_wgs84(geoms: np.ndarray, crs: CRS) -> np.ndarray:
    """Reproject every vertex of every polygon with one vectorised transform."""
    geoms = np.array(geoms, dtype=object)
    coords = shapely.get_coordinates(geoms)
    if not len(coords):
        return geoms
    lon, lat = rasterio.warp.transform(crs, WGS84, coords[:, 0], coords[:, 1])
    return shapely.set_coordinates(geoms.copy(), np.c_[lon, lat])


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
        geoms = list(_to_wgs84(np.array(geoms, dtype=object), crs))
    if geoms:  # RFC 7946 right-hand rule: exteriors counter-clockwise, holes clockwise
        geoms = list(shapely.orient_polygons(np.array(geoms, dtype=object), exterior_cw=False))
    features = [{"type": "Feature", "geometry": shapely.geometry.mapping(g), "properties": a}
                for g, a in zip(geoms, attrs)]  # fmt: skip
    system = _coordinate_system(transform, crs, to_wgs84)
    return {"type": "FeatureCollection", "coordinate_system": system, "features": features}


def _coordinate_system(transform: Affine | None, crs: CRS | None, to_wgs84: bool) -> str:
    """The GeoJSON's ``coordinate_system`` member."""
    if crs is not None:
        return WGS84 if to_wgs84 else crs.to_string()
    # no CRS: the raster's own coordinates (pixels without a geotransform)
    plain = transform is None or transform == Affine.identity()
    return "pixel (column, row)" if plain else "the raster's coordinates (no CRS)"


def _file_coordinate_system(transform: Affine, crs: CRS | None, to_wgs84: bool) -> str:
    """The ``coordinate_system`` member of a GeoJSON written by :func:`write_vectors`."""
    if crs is None and transform == Affine.identity():
        return "pixel (column, -row): where QGIS draws a raster without georeference"
    return _coordinate_system(transform, crs, to_wgs84)


@dataclass(frozen=True)
class MapSource:
    """A class-map GeoTIFF opened for strip reads, after the minimum mapping unit.

    Attributes:
        read: Strip reader (:data:`~landcover.inference.vector_blocks.StripReader`).
        height: Rows.
        width: Columns.
        transform: The map's geotransform.
        crs: The map's CRS, or ``None``.
        sieve_px: The sieve threshold applied (pixels; 0 or 1: none).
    """

    read: StripReader
    height: int
    width: int
    transform: Affine
    crs: CRS | None
    sieve_px: int


@contextmanager
def open_map(
    class_map: str | Path,
    scheme: ClassScheme,
    *,
    nodata: int = 255,
    options: VectorOptions = VectorOptions(),
    probabilities: str | Path | None = None,
) -> Iterator[MapSource]:
    """Open a class-map GeoTIFF for strip reads with the minimum mapping unit applied.

    Each strip read returns the sieved classes (:func:`~landcover.inference.sieve.
    sieved_strips`: windowed reads of the strip and its halo) and, with
    ``probabilities``, the probability of each pixel's class (uint8 rasters read as
    0..255 -> 0..1, NaN as 0).
    """
    with ExitStack() as stack:
        src = stack.enter_context(open_raster(class_map))
        height, width, transform, crs = src.height, src.width, src.transform, src.crs
        size = min(options.threshold_px(pixel_area_m2(transform, crs, height)), height * width)
        sieved = sieved_strips(
            lambda row0, n: src.read(1, window=rasterio.windows.Window(0, row0, width, n)),
            height, size, nodata,
        )  # fmt: skip
        probs = stack.enter_context(open_raster(probabilities)) if probabilities else None
        to_index = index_lut(scheme, nodata)

        def read(row0: int, n: int) -> tuple[np.ndarray, np.ndarray | None]:
            cls = sieved(row0, n)
            if probs is None:
                return cls, None
            p = probs.read(window=rasterio.windows.Window(0, row0, width, n))
            scale = 1 / 255 if p.dtype == np.uint8 else 1.0
            p = _class_prob(p, cls, to_index).astype(np.float32) * np.float32(scale)
            return cls, np.nan_to_num(p, nan=0.0)

        yield MapSource(read, height, width, transform, crs, size)


def _atomic(out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out, out.with_name(f".{out.name}.{os.getpid()}.tmp{out.suffix}")


def write_vectors(
    class_map: str | Path,
    scheme: ClassScheme,
    *,
    geojson: str | Path | None = None,
    gpkg: str | Path | None = None,
    nodata: int = 255,
    to_wgs84: bool = True,
    options: VectorOptions = VectorOptions(),
    probabilities: str | Path | None = None,
    layer: str = "landcover",
    rows: int | None = None,
) -> dict[str, Any]:
    """Polygonize a class-map GeoTIFF into GeoJSON and/or a GeoPackage in one pass.

    Strip by strip (:mod:`landcover.inference.vector_blocks`), features streamed to the
    files (:mod:`landcover.inference.vector_writers`), each written to a temporary file
    and moved into place when complete; GDAL's block cache is held to
    :data:`GDAL_CACHE_MB` meanwhile.

    GeoJSON is in WGS 84 (RFC 7946) when the raster has a CRS and ``to_wgs84``. The
    GeoPackage is version :data:`GPKG_VERSION` (GDAL >= 3.6 writes 1.4 by default, which
    GDAL 3.6 / QGIS 3.22 open with a "may only be partially supported" warning) in the
    raster's CRS and carries its QGIS style (:func:`landcover.geo.vector_style.
    add_gpkg_style`). A raster without a CRS gets polygons in its coordinates, and without
    a geotransform either (a plain JPEG) where QGIS draws it (x = column, y = -row), in both
    files; the GeoPackage layer has no spatial reference and the GeoJSON names
    :data:`UNDEFINED_CRS` so that GDAL and QGIS do not take it for WGS 84.

    Args:
        class_map: uint8 class map (as written by ``predict_raster``).
        scheme: Class names, colours and map values.
        geojson: Output ``.geojson`` path, if wanted.
        gpkg: Output ``.gpkg`` path, if wanted.
        nodata: Class value of pixels without data.
        to_wgs84: Reproject the GeoJSON to WGS 84 when the raster has a CRS.
        options: Minimum mapping unit and simplification (:data:`EXACT`: none).
        probabilities: Per-class probability raster for ``mean_prob``.
        layer: GeoPackage layer name.
        rows: Rows per strip (default: about ``BLOCK_PIXELS`` pixels per strip).

    Returns:
        ``geojson`` and ``gpkg`` (paths or ``None``), ``polygons``, ``sieve_px``.
    """
    from landcover.geo.vector_style import add_gpkg_style
    from landcover.inference.vector_writers import GeoJSONWriter, GpkgWriter

    if geojson is None and gpkg is None:
        raise ValueError("write_vectors needs a geojson or a gpkg path")
    targets = [_atomic(p) if p is not None else None for p in (geojson, gpkg)]
    try:
        with (
            rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB),
            open_map(
                class_map, scheme, nodata=nodata, options=options, probabilities=probabilities
            ) as src,
        ):
            t, crs = src.transform, src.crs
            px_area = pixel_area_m2(t, crs, src.height)
            to_index = index_lut(scheme, nodata)
            gj = gp = None
            if targets[0] is not None:
                named = None if crs is not None and to_wgs84 else (  # RFC 7946: WGS 84
                    crs.to_wkt() if crs is not None else UNDEFINED_CRS)  # fmt: skip
                gj = GeoJSONWriter(targets[0][1], _file_coordinate_system(t, crs, to_wgs84),
                                   named)  # fmt: skip
            if targets[1] is not None:
                wkt = crs.to_wkt() if crs is not None else None
                gp = GpkgWriter(targets[1][1], layer, wkt, GPKG_VERSION)
            # where QGIS draws a raster without CRS and geotransform
            gp_t = QGIS_UNREFERENCED if crs is None and t == Affine.identity() else t
            count = 0
            for batch in block_polygons(src.read, src.height, src.width, nodata=nodata,
                                        simplify=options.simplify, rows=rows):  # fmt: skip
                attrs = _attributes(batch, scheme, to_index, px_area)
                count += len(attrs)
                if gj is not None:
                    g = _to_crs(batch.geoms, t if crs is not None else gp_t)
                    gj.write(_to_wgs84(g, crs) if to_wgs84 and crs is not None else g, attrs)
                if gp is not None:
                    gp.write(_to_crs(batch.geoms, gp_t), [
                        {k: a[k] for k in GPKG_FIELDS} for a in attrs])  # fmt: skip
            sieve_px = src.sieve_px
        if gj is not None:
            gj.close()
        if gp is not None:
            gp.close()
            add_gpkg_style(targets[1][1], layer, scheme, geometry="geom")
        for target in targets:
            if target is not None:
                os.replace(target[1], target[0])
    finally:
        for target in targets:
            if target is not None:
                target[1].unlink(missing_ok=True)
    return {"geojson": targets[0][0] if targets[0] else None,
            "gpkg": targets[1][0] if targets[1] else None,
            "polygons": count, "sieve_px": sieve_px}  # fmt: skip


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
    """Polygonize a class-map GeoTIFF into a GeoJSON file (:func:`write_vectors`).

    Returns:
        ``out``.
    """
    return write_vectors(class_map, scheme, geojson=out, nodata=nodata, to_wgs84=to_wgs84,
                         options=options, probabilities=probabilities)["geojson"]  # fmt: skip


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
    """Polygonize a class-map GeoTIFF into a styled GeoPackage (:func:`write_vectors`).

    Returns:
        ``out``.
    """
    return write_vectors(class_map, scheme, gpkg=out, nodata=nodata, options=options,
                         probabilities=probabilities, layer=layer)["gpkg"]  # fmt: skip
