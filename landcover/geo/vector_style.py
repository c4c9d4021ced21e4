"""QGIS styles of the vector output: polygons coloured by class when the layer opens.

Two carriers, both read by QGIS when a layer is added:

- GeoJSON: a ``.qml`` layer style beside the file (``map.geojson`` -> ``map.qml``);
- GeoPackage: a row of the ``layer_styles`` table inside the file (the table QGIS itself
  writes with "Save style -> In database"; its default style is applied on open).

The style is a *categorized* renderer on the ``class_name`` attribute (the name, not an
index, so it stays right whatever values the class map holds): one category per class
with the class colour as fill, a darker outline, and the class name as legend label.
Formats: QGIS style XML (``qgis.dtd``); the ``layer_styles`` columns as QGIS' OGR
provider creates them (``QgsOgrProviderUtils``, QGIS 3.x).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from landcover.geo.classes import ClassScheme

#: The attribute the categories are keyed on.
FIELD = "class_name"
#: Name of the style in the GeoPackage.
STYLE_NAME = "landcover classes"


def _color(rgb: Sequence[int], alpha: int = 255) -> str:
    return ",".join(str(int(v)) for v in (*rgb[:3], alpha))


def _symbol(parent: ET.Element, name: str, rgb: Sequence[int]) -> None:
    symbol = ET.SubElement(parent, "symbol", type="fill", name=name, alpha="1",
                           clip_to_extent="1", force_rhr="0")  # fmt: skip
    layer = ET.SubElement(symbol, "layer", {"class": "SimpleFill", "enabled": "1",
                                            "locked": "0", "pass": "0"})  # fmt: skip
    outline = [int(v * 0.6) for v in rgb[:3]]
    for key, value in (("color", _color(rgb)), ("outline_color", _color(outline)),
                       ("outline_style", "solid"), ("outline_width", "0.26"),
                       ("outline_width_unit", "MM"), ("style", "solid")):  # fmt: skip
        ET.SubElement(layer, "prop", k=key, v=value)


def vector_qml(scheme: ClassScheme) -> str:
    """QGIS style of the class polygons: categorized by ``class_name``, class colours."""
    root = ET.Element("qgis", version="3.22.0", styleCategories="Symbology")
    renderer = ET.SubElement(root, "renderer-v2", type="categorizedSymbol", attr=FIELD,
                             symbollevels="0", enableorderby="0", forceraster="0")  # fmt: skip
    categories = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    for i, (name, rgb) in enumerate(zip(scheme.names, scheme.colors)):
        ET.SubElement(categories, "category", render="true", symbol=str(i), value=str(name),
                      label=str(name))  # fmt: skip
        _symbol(symbols, str(i), rgb)
    ET.SubElement(root, "layerGeometryType").text = "2"  # polygons
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f"<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n{body}\n"


def write_vector_qml(vector_path: str | Path, scheme: ClassScheme) -> Path:
    """Write the style beside a vector file (same stem, ``.qml``), atomically."""
    path = Path(vector_path).with_suffix(".qml")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(vector_qml(scheme), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def add_gpkg_style(gpkg: str | Path, layer: str, scheme: ClassScheme, geometry: str) -> None:
    """Store the style in the GeoPackage's ``layer_styles`` table as the layer's default.

    Written through GDAL (an attributes table registered in ``gpkg_contents``, as QGIS
    writes it), into a file that is not yet in place (the caller's temporary file).
    """
    import pyogrio.raw

    qml = vector_qml(scheme)
    names = ["f_table_catalog", "f_table_schema", "f_table_name", "f_geometry_column",
             "styleName", "styleQML", "styleSLD", "useAsDefault", "description", "owner",
             "ui", "update_time"]  # fmt: skip
    text = [
        "", "", layer, geometry, STYLE_NAME, qml, "", None,
        "class colours of the land-cover map (landcover predict)", "", "", None,
    ]  # fmt: skip
    columns = [np.array([v], dtype=object) for v in text]
    columns[7] = np.array([True])
    # GeoPackage's own datetime text (GDAL warns on reading any other form)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    columns[11] = np.array([stamp], dtype=object)
    pyogrio.raw.write(str(gpkg), None, columns, names, driver="GPKG", layer="layer_styles",
                      geometry_type=None, append=True)  # fmt: skip
