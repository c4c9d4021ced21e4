"""Per-class polygons of a class map, as GeoJSON.

Connected regions of equal class (4-connectivity) are traced into polygons with holes by
GDAL's polygonizer through :func:`rasterio.features.shapes`. Each polygon becomes one
GeoJSON Feature whose properties name its class (index, name, display colour). Coordinates
follow RFC 7946 (WGS 84 longitude/latitude) when the raster has a CRS; for rasters
without georeferencing they are pixel coordinates (column, row) and the collection says
so in its ``coordinate_system`` member.

Memory: the class map is read whole as uint8 (one byte per pixel), plus the polygons.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rasterio.features
import rasterio.warp
from affine import Affine
from rasterio.crs import CRS

from landcover.geo.classes import ClassScheme
from landcover.geo.raster import open_raster

WGS84 = "EPSG:4326"


def class_polygons(
    classes: np.ndarray,
    scheme: ClassScheme,
    *,
    transform: Affine | None = None,
    crs: CRS | None = None,
    nodata: int = 255,
    to_wgs84: bool = True,
) -> Iterator[dict[str, Any]]:
    """Yield one GeoJSON Feature per connected region of one class.

    Args:
        classes: ``(H, W)`` class indices; ``nodata`` pixels get no polygon.
        scheme: Names and colours of the classes.
        transform: Pixel -> CRS transform (identity: pixel coordinates).
        crs: CRS of ``transform``; with ``to_wgs84`` polygons are reprojected to WGS 84.
        nodata: Class value of pixels without data.
        to_wgs84: Reproject to longitude/latitude (RFC 7946) when ``crs`` is known.
    """
    arr = np.ascontiguousarray(classes.astype(np.uint8))
    transform = transform or Affine.identity()
    shapes = list(
        rasterio.features.shapes(arr, mask=arr != nodata, connectivity=4, transform=transform)
    )
    if to_wgs84 and crs is not None:
        shapes = _to_wgs84(shapes, crs)
    for geom, value in shapes:
        idx = int(value)
        r, g, b = scheme.colors[idx] if idx < len(scheme.colors) else (0, 0, 0)
        yield {
            "type": "Feature",
            "geometry": geom,
            "properties": {
                "class_index": idx,
                "class_name": scheme.names[idx] if idx < scheme.num_classes else str(idx),
                "color": f"#{r:02x}{g:02x}{b:02x}",
            },
        }


def _to_wgs84(shapes: list[tuple[dict[str, Any], float]], crs: CRS) -> list[Any]:
    """Reproject every vertex of every polygon with one vectorised transform."""
    xs: list[float] = []
    ys: list[float] = []
    for geom, _ in shapes:
        for ring in geom["coordinates"]:
            for x, y in ring:
                xs.append(x)
                ys.append(y)
    if not xs:
        return shapes
    lon, lat = rasterio.warp.transform(crs, WGS84, xs, ys)
    out, i = [], 0
    for geom, value in shapes:
        rings = []
        for ring in geom["coordinates"]:
            n = len(ring)
            rings.append([[lon[j], lat[j]] for j in range(i, i + n)])
            i += n
        out.append(({"type": "Polygon", "coordinates": rings}, value))
    return out


def feature_collection(
    classes: np.ndarray,
    scheme: ClassScheme,
    *,
    transform: Affine | None = None,
    crs: CRS | None = None,
    nodata: int = 255,
    to_wgs84: bool = True,
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of :func:`class_polygons`."""
    features = list(class_polygons(classes, scheme, transform=transform, crs=crs,
                                   nodata=nodata, to_wgs84=to_wgs84))  # fmt: skip
    system = "pixel (column, row)" if crs is None else (WGS84 if to_wgs84 else crs.to_string())
    return {"type": "FeatureCollection", "coordinate_system": system, "features": features}


def write_geojson(
    class_map: str | Path,
    out: str | Path,
    scheme: ClassScheme,
    *,
    nodata: int = 255,
    to_wgs84: bool = True,
) -> Path:
    """Polygonize a class-map GeoTIFF into a GeoJSON file (written atomically).

    Args:
        class_map: uint8 class-index raster (as written by :func:`.predict.predict_raster`).
        out: Output ``.geojson`` path.
        scheme: Class names and colours.
        nodata: Class value of pixels without data.
        to_wgs84: Reproject to WGS 84 (RFC 7946) when the raster has a CRS.

    Returns:
        ``out``.
    """
    with open_raster(class_map) as src:
        arr = src.read(1)
        transform, crs = src.transform, src.crs
    fc = feature_collection(arr, scheme, transform=transform if crs else None, crs=crs,
                            nodata=nodata, to_wgs84=to_wgs84)  # fmt: skip
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(fc))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
