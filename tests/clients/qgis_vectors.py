"""Child process: open vector (and raster) files in QGIS as an analyst would.

``python qgis_vectors.py FILE...`` adds each file as a layer (``ogr`` for ``.gpkg`` /
``.geojson``, ``gdal`` otherwise) and prints one JSON line: per file, whether it is valid,
its CRS, extent, renderer type, categories (attribute, value, label, colour) and feature
count; for a raster its default renderer, the classes of a paletted one (value, colour,
alpha, label: what the layer's legend lists), the band's nodata value and the colours the
renderer draws at a few pixels; and every message QGIS logged meanwhile (GDAL's warnings
among them). Started by ``test_qgis_vectors.py`` and ``test_qgis_class_map.py`` through
:func:`qgis_env.run_in_qgis`.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.append(os.environ["LANDCOVER_QGIS_PYTHONPATH"])

from qgis.core import QgsApplication, QgsRasterLayer, QgsVectorLayer


def describe(path: str) -> dict:
    """What QGIS makes of one file."""
    if path.endswith((".gpkg", ".geojson")):
        layer = QgsVectorLayer(path, os.path.basename(path), "ogr")
    else:
        layer = QgsRasterLayer(path, os.path.basename(path), "gdal")
    ext = layer.extent()
    out = {
        "valid": layer.isValid(),
        "crs": layer.crs().authid() if layer.crs().isValid() else None,
        "crs_name": layer.crs().description(),
        "geographic": layer.crs().isGeographic(),
        "extent": [ext.xMinimum(), ext.yMinimum(), ext.xMaximum(), ext.yMaximum()],
    }
    if isinstance(layer, QgsVectorLayer):
        renderer = layer.renderer()
        out["renderer"] = renderer.type()
        out["features"] = layer.featureCount()
        if renderer.type() == "categorizedSymbol":
            out["attribute"] = renderer.classAttribute()
            out["categories"] = [[str(c.value()), c.label(), c.symbol().color().name()]
                                 for c in renderer.categories()]  # fmt: skip
    elif layer.isValid():
        out.update(_raster(layer))
    return out


def _raster(layer: QgsRasterLayer) -> dict:
    """Renderer, legend and drawn colours of a raster layer as QGIS set it up on open."""
    renderer, provider = layer.renderer(), layer.dataProvider()
    out = {
        "renderer": renderer.type(),
        "legend": [
            [label, color.name(), color.alpha()] for label, color in renderer.legendSymbologyItems()
        ],
        "nodata": provider.sourceNoDataValue(1) if provider.sourceHasNoDataValue(1) else None,
    }
    if renderer.type() == "paletted":
        out["classes"] = [[c.value, c.color.name(), c.color.alpha(), c.label]
                          for c in renderer.classes()]  # fmt: skip
    # what the renderer draws: one pixel per raster pixel; rows of [#rrggbb, alpha]
    w, h = layer.width(), layer.height()
    if w * h <= 128 * 128:
        image = renderer.block(1, layer.extent(), w, h).image()
        out["drawn"] = [[[image.pixelColor(x, y).name(), image.pixelColor(x, y).alpha()]
                         for x in range(w)] for y in range(h)]  # fmt: skip
    return out


def main(paths: list[str]) -> None:
    """Open every file, collect what QGIS logged meanwhile."""
    app = QgsApplication([], False)
    app.initQgis()
    messages: list[str] = []
    QgsApplication.messageLog().messageReceived.connect(
        lambda message, tag, level: messages.append(f"{tag}: {message}")
    )
    layers = {p: describe(p) for p in paths}
    app.processEvents()
    print(json.dumps({"layers": layers, "messages": messages}))
    app.exitQgis()


if __name__ == "__main__":
    main(sys.argv[1:])
