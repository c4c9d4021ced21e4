"""Pixels and ground areas (km²) of each class of a class map, for the run report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from landcover.inference.vectorize import pixel_area_m2

#: Rows read at a time.
_ROWS = 1024


def class_areas(path: str | Path) -> dict[str, Any]:
    """Count the classes of a one-band class map and convert to km².

    Class names come from the map's own band tags ``CLASS_<value>=<name>`` (what
    ``landcover predict`` writes); a value without a tag is named by its number.

    Returns:
        ``{"pixels": mapped pixels, "nodata_pixels": n, "pixel_m2": area of one pixel or
        None without a CRS, "classes": {name: {"value": v, "pixels": n, "km2": a|None}}}``.
    """
    with rasterio.open(path) as ds:
        counts = np.zeros(256 if ds.dtypes[0] == "uint8" else 65536, dtype=np.int64)
        for y in range(0, ds.height, _ROWS):
            block = ds.read(1, window=Window(0, y, ds.width, min(_ROWS, ds.height - y)))
            counts += np.bincount(block.ravel().astype(np.int64), minlength=counts.size)[
                : counts.size
            ]
        tags = ds.tags(1)
        nodata = None if ds.nodata is None else int(ds.nodata)
        area = pixel_area_m2(ds.transform, ds.crs, ds.height)
    classes = {}
    for value in np.flatnonzero(counts):
        if value == nodata:
            continue
        n = int(counts[value])
        name = tags.get(f"CLASS_{value}", str(value))
        classes[name] = {"value": int(value), "pixels": n,
                         "km2": None if area is None else n * area / 1e6}  # fmt: skip
    return {
        "pixels": sum(c["pixels"] for c in classes.values()),
        "nodata_pixels": int(counts[nodata]) if nodata is not None else 0,
        "pixel_m2": area,
        "classes": classes,
    }
