"""QGIS-ready sidecars of predicted maps: ``.qml`` styles and GDAL category names.

A class map opens in QGIS (and any GDAL tool) styled and named:

- ``MAP.qml``: a QGIS layer style, picked up automatically when the raster is added. The
  class map gets a *paletted* renderer (one entry per class: value, colour, class name;
  nodata transparent); the probabilities file a *single-band pseudocolour* renderer of
  band 1 over 0..1 (a viridis ramp) whose other bands carry the class names as
  descriptions.
- ``MAP.tif.aux.xml``: GDAL's persistent auxiliary metadata (PAM) with the band's
  ``CategoryNames`` and a thematic raster attribute table (value, class name, RGB). The
  GeoTIFF format has no tag for either; GDAL keeps them in this sidecar and reads them
  back as the band's category names / RAT (``gdalinfo``, QGIS' "Paletted/Unique values"
  classify, ArcGIS). The names also go into the GeoTIFF's own GDAL metadata as band tags
  ``CLASS_<value>=<name>`` (travels with the file alone).

Formats: QGIS project/style XML (``qgis.dtd``), GDAL PAM (``gdal_pam.xsd``).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from landcover.geo.classes import ClassScheme

__all__ = [
    "category_tags",
    "class_map_qml",
    "pam_xml",
    "probabilities_qml",
    "write_class_map_sidecars",
    "write_probabilities_style",
]

#: Colour ramp of probabilities (viridis at 0, 0.25, 0.5, 0.75, 1).
VIRIDIS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")
QGIS_VERSION = "3.28.0"


def _hex(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb[:3]))


def _qgis_root() -> tuple[ET.Element, ET.Element]:
    root = ET.Element("qgis", version=QGIS_VERSION, styleCategories="AllStyleCategories")
    pipe = ET.SubElement(root, "pipe")
    return root, pipe


def _finish(root: ET.Element, pipe: ET.Element) -> str:
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "huesaturation", colorizeOn="0", saturation="0", grayscaleMode="0")
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f"<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n{body}\n"


def class_map_qml(scheme: ClassScheme) -> str:
    """QGIS style of a class-index map: paletted renderer, one entry per class."""
    root, pipe = _qgis_root()
    renderer = ET.SubElement(pipe, "rasterrenderer", type="paletted", band="1",
                             opacity="1", alphaBand="-1", nodataColor="")  # fmt: skip
    ET.SubElement(renderer, "rasterTransparency")
    palette = ET.SubElement(renderer, "colorPalette")
    for v, name, rgb in zip(scheme.raw_values(), scheme.names, scheme.colors):
        ET.SubElement(palette, "paletteEntry", value=str(v), color=_hex(rgb),
                      alpha="255", label=str(name))  # fmt: skip
    return _finish(root, pipe)


def probabilities_qml(class_names: Sequence[str]) -> str:
    """QGIS style of the probabilities file: band 1 as pseudocolour over 0..1."""
    root, pipe = _qgis_root()
    renderer = ET.SubElement(pipe, "rasterrenderer", type="singlebandpseudocolor", band="1",
                             opacity="1", alphaBand="-1", classificationMin="0",
                             classificationMax="1")  # fmt: skip
    ET.SubElement(renderer, "rasterTransparency")
    shader = ET.SubElement(ET.SubElement(renderer, "rastershader"), "colorrampshader",
                           colorRampType="INTERPOLATED", classificationMode="1", clip="0",
                           minimumValue="0", maximumValue="1")  # fmt: skip
    for j, color in enumerate(VIRIDIS):
        v = j / (len(VIRIDIS) - 1)
        label = f"P({class_names[0]}) = {v:.2f}" if class_names else f"{v:.2f}"
        ET.SubElement(shader, "item", value=f"{v:g}", color=color, alpha="255", label=label)
    return _finish(root, pipe)


def category_tags(scheme: ClassScheme) -> dict[str, str]:
    """Band tags ``CLASS_<value>=<name>`` stored inside the GeoTIFF (the map's values)."""
    return {f"CLASS_{v}": str(n) for v, n in zip(scheme.raw_values(), scheme.names)}


def pam_xml(scheme: ClassScheme, nodata: int = 255) -> str:
    """GDAL PAM XML with band 1's category names and a thematic attribute table."""
    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", band="1")
    cats = ET.SubElement(band, "CategoryNames")  # entry v names the value v
    by_value = dict(zip(scheme.raw_values(), scheme.names))
    for v in range(max(by_value) + 1):
        ET.SubElement(cats, "Category").text = str(by_value.get(v, ""))
    rat = ET.SubElement(band, "GDALRasterAttributeTable", tableType="thematic")
    for i, (fname, ftype, usage) in enumerate(
        (("value", 0, 5), ("class_name", 2, 2), ("red", 0, 6), ("green", 0, 7), ("blue", 0, 8))
    ):
        f = ET.SubElement(rat, "FieldDefn", index=str(i))
        ET.SubElement(f, "Name").text = fname
        ET.SubElement(f, "Type").text = str(ftype)  # 0 integer, 2 string
        ET.SubElement(f, "Usage").text = str(usage)  # GFU_MinMax, Name, Red, Green, Blue
    for i, (v, name, rgb) in enumerate(zip(scheme.raw_values(), scheme.names, scheme.colors)):
        row = ET.SubElement(rat, "Row", index=str(i))
        for value in (v, name, *rgb):
            ET.SubElement(row, "F").text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_class_map_sidecars(
    path: str | Path, scheme: ClassScheme, nodata: int = 255
) -> list[Path]:
    """Write ``MAP.qml`` and ``MAP.tif.aux.xml`` next to a class-map GeoTIFF."""
    path = Path(path)
    return [
        _write_text(path.with_suffix(".qml"), class_map_qml(scheme)),
        _write_text(path.with_name(path.name + ".aux.xml"), pam_xml(scheme, nodata)),
    ]


def write_probabilities_style(path: str | Path, class_names: Sequence[str]) -> Path:
    """Write ``PROBS.qml`` next to a probabilities GeoTIFF."""
    path = Path(path)
    return _write_text(path.with_suffix(".qml"), probabilities_qml(class_names))
