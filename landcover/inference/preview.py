"""Coloured PNG previews of class maps (for the REST service and quick looks).

Classes are painted with the scheme's display colours; pixels without data are
transparent. :func:`preview_png` reads a class-map GeoTIFF decimated to at most
``max_size`` pixels on its longer side (nearest neighbour, through GDAL's overviews or
decimated reads), so a preview of a huge raster costs little memory.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from rasterio.enums import Resampling

from landcover.geo.classes import ClassScheme
from landcover.geo.map_values import index_lut
from landcover.geo.raster import open_raster


def colorize_rgba(classes: np.ndarray, scheme: ClassScheme, nodata: int = 255) -> np.ndarray:
    """``(H, W, 4)`` uint8 RGBA image of a class map (``nodata`` transparent).

    The map holds ``scheme.raw_values()`` (:func:`landcover.geo.map_values.map_scheme`):
    each class's colour goes to its value.
    """
    arr = np.asarray(classes)
    rgb = scheme.colorize(index_lut(scheme, nodata)[np.clip(arr, 0, 255).astype(np.int64)])
    alpha = np.where(arr == nodata, 0, 255).astype(np.uint8)
    return np.concatenate([rgb, alpha[..., None]], axis=-1)


def png_bytes(classes: np.ndarray, scheme: ClassScheme, nodata: int = 255) -> bytes:
    """Encode a class map (``scheme.raw_values()``) as a coloured RGBA PNG."""
    buf = io.BytesIO()
    Image.fromarray(colorize_rgba(classes, scheme, nodata), mode="RGBA").save(buf, format="PNG")
    return buf.getvalue()


def preview_png(
    class_map: str | Path, scheme: ClassScheme, *, max_size: int = 2048, nodata: int = 255
) -> bytes:
    """PNG preview of a class-map GeoTIFF, at most ``max_size`` px on its longer side.

    Args:
        class_map: uint8 class map holding ``scheme.raw_values()``.
        scheme: Class colours and map values (a :func:`~landcover.geo.map_values.map_scheme`).
        max_size: Longest side of the preview (the raster is decimated, never enlarged).
        nodata: Class value of pixels without data (transparent).

    Returns:
        The PNG file's bytes.
    """
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1; got {max_size}")
    with open_raster(class_map) as src:
        scale = min(1.0, max_size / max(src.width, src.height))
        shape = (max(1, round(src.height * scale)), max(1, round(src.width * scale)))
        arr = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    return png_bytes(arr, scheme, nodata)


def write_png(path: str | Path, data: bytes) -> Path:
    """Write PNG bytes atomically."""
    import os

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
