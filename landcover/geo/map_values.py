"""Which value each class has in a written class map: the class file's, or its index.

Networks and masks in memory number classes ``0..n-1`` (their position in the class file).
A class map a user opens in a GIS should hold the values of *their* scheme: a class file
that gives the classes values ``1..7`` gets a map of ``1..7``, and an analyst joining the
map to their legend is not off by one. That is the default (``class_values="file"``);
``"index"`` writes the positions ``0..n-1`` instead, an explicit choice. Colour-coded
schemes (DeepGlobe) have no values; their maps hold the indices either way.

:func:`map_scheme` returns the scheme whose :meth:`~landcover.geo.classes.ClassScheme.raw_values`
are the map's values, so that every writer (colour table, band tags, QGIS style, GDAL
category names, polygons' ``class_id``, PNG previews) keys names and colours by the same
values. :func:`value_lut` and :func:`index_lut` convert between indices and values.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np

from landcover.geo.classes import ClassScheme

#: Map value of pixels without data.
MAP_NODATA = 255
#: The choices of ``--class-values``.
CLASS_VALUES = ("file", "index")
ClassValues = Literal["file", "index"]

__all__ = ["CLASS_VALUES", "MAP_NODATA", "ClassValues", "index_lut", "map_scheme", "value_lut"]


def map_scheme(
    scheme: ClassScheme, class_values: str = "file", nodata: int = MAP_NODATA
) -> ClassScheme:
    """The scheme whose ``raw_values()`` are the values a class map holds.

    Args:
        scheme: The model's class scheme.
        class_values: ``"file"``: the class file's values (indices for colour-coded
            schemes); ``"index"``: the class indices ``0..n-1``.
        nodata: The map's nodata value, which no class may take.

    Raises:
        ValueError: An unknown choice, or class values that a uint8 map with this nodata
            cannot hold (the message says to choose ``index``).
    """
    if class_values not in CLASS_VALUES:
        raise ValueError(f"class values must be one of {list(CLASS_VALUES)}; got {class_values!r}")
    n = scheme.num_classes
    if class_values == "index" or scheme.values is None:
        if n >= nodata:
            raise ValueError(f"a class map holds at most {nodata} classes; the model has {n}")
        if scheme.values == tuple(range(n)):
            return scheme
        return replace(scheme, values=tuple(range(n)), encoding="value", ignore_value=None,
                       threshold=None)  # fmt: skip
    bad = [v for v in scheme.values if not 0 <= v <= 255 or v == nodata]
    if bad:
        raise ValueError(
            f"class values {bad} do not fit a uint8 class map (0..255, {nodata} = nodata); "
            "write class indices instead (--class-values index) or renumber the class file"
        )
    return scheme


def value_lut(scheme: ClassScheme, nodata: int = MAP_NODATA) -> np.ndarray:
    """``(256,)`` uint8 table: class index -> map value (``nodata`` and others -> nodata).

    ``scheme`` is a :func:`map_scheme`.
    """
    lut = np.full(256, nodata, dtype=np.uint8)
    lut[: scheme.num_classes] = np.asarray(scheme.raw_values(), dtype=np.uint8)
    return lut


def index_lut(scheme: ClassScheme, nodata: int = MAP_NODATA) -> np.ndarray:
    """``(256,)`` int64 table: map value -> class index (values of no class -> ``nodata``).

    ``scheme`` is a :func:`map_scheme`.
    """
    lut = np.full(256, nodata, dtype=np.int64)
    lut[np.asarray(scheme.raw_values(), dtype=np.int64)] = np.arange(scheme.num_classes)
    return lut
