"""Vector outputs carry their QGIS style, a GeoPackage version QGIS 3.22 reads, and an
unreferenced raster's polygons where QGIS draws the raster (checked without QGIS here;
tests/clients opens them in QGIS itself)."""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyogrio
import pytest

from landcover.geo.classes import ClassScheme
from landcover.geo.vector_style import STYLE_NAME, vector_qml
from landcover.inference.predict import Predictor
from landcover.inference.predict_raster import predict_raster
from landcover.inference.testing import tiny_bundle

SCHEME = ClassScheme(names=("building", "road"), values=(1, 2),
                     colors=((60, 16, 152), (226, 169, 41)))  # fmt: skip


def test_vector_qml_is_categorized_by_class_name_with_class_colours() -> None:
    root = ET.fromstring(vector_qml(SCHEME).split("\n", 1)[1])
    renderer = root.find("renderer-v2")
    assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "class_name"
    cats = renderer.findall("categories/category")
    assert [(c.get("value"), c.get("label"), c.get("symbol")) for c in cats] == [
        ("building", "building", "0"), ("road", "road", "1"),
    ]  # fmt: skip
    fills = {s.get("name"): s.find("layer/prop[@k='color']").get("v")
             for s in renderer.findall("symbols/symbol")}  # fmt: skip
    assert fills == {"0": "60,16,152,255", "1": "226,169,41,255"}


@pytest.fixture
def outputs(tmp_path: Path, write_tif) -> dict[str, Path]:
    """predict with --gpkg and --geojson on a georeferenced and an unreferenced raster."""
    from dataclasses import replace

    bundle = replace(tiny_bundle(3, 2, mean=100.0, std=50.0, seed=4), classes=SCHEME.to_dict())
    predictor = Predictor.from_bundle(bundle)
    image = np.random.default_rng(0).integers(0, 250, (3, 40, 60)).astype(np.uint8)
    out: dict[str, Path] = {}
    for name, crs in (("geo", True), ("plain", False)):
        src = write_tif(tmp_path / f"{name}.tif", image, crs=crs)
        out[f"{name}_gpkg"] = tmp_path / f"{name}.gpkg"
        geojson = tmp_path / f"{name}_polygons.geojson" if crs else None
        res = predict_raster(predictor, src, tmp_path / f"{name}_map.tif", geojson=geojson,
                             gpkg=out[f"{name}_gpkg"], style=True, progress=False)  # fmt: skip
        assert "notes" not in res.info
    return out


def test_gpkg_holds_its_default_style_and_is_version_1_2(outputs: dict[str, Path]) -> None:
    path = outputs["geo_gpkg"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 10200  # GeoPackage 1.2
        rows = db.execute("SELECT f_table_name, f_geometry_column, styleName, styleQML, "
                          "useAsDefault FROM layer_styles").fetchall()  # fmt: skip
        kinds = dict(db.execute("SELECT table_name, data_type FROM gpkg_contents").fetchall())
    assert kinds == {"landcover": "features", "layer_styles": "attributes"}
    assert len(rows) == 1
    table, column, name, qml, default = rows[0]
    assert (table, column, name, default) == ("landcover", "geom", STYLE_NAME, 1)
    assert qml == vector_qml(SCHEME)
    assert pyogrio.read_info(path, layer="landcover")["geometry_name"] == "geom"
    # the GeoJSON's style beside it, under the name QGIS looks for
    assert (path.parent / "geo_polygons.qml").read_text() == vector_qml(SCHEME)


def test_unreferenced_raster_polygons_lie_where_qgis_draws_it(outputs: dict[str, Path]) -> None:
    """QGIS draws a raster without CRS and geotransform at x in [0, W], y in [-H, 0]."""
    info = pyogrio.read_info(outputs["plain_gpkg"], layer="landcover")
    assert info["crs"] is None
    x0, y0, x1, y1 = info["total_bounds"]
    assert (x0, y0, x1, y1) == (0.0, -40.0, 60.0, 0.0)


def test_geojson_named_like_the_class_map_keeps_the_rasters_style(
    tmp_path: Path, write_tif
) -> None:
    bundle = tiny_bundle(3, 2, mean=100.0, std=50.0)
    src = write_tif(tmp_path / "in.tif", np.zeros((3, 20, 20), np.uint8) + 7)
    res = predict_raster(Predictor.from_bundle(bundle), src, tmp_path / "map.tif",
                         geojson=tmp_path / "map.geojson", style=True, progress=False)  # fmt: skip
    assert "class map's" in res.info["notes"][0]
    assert "paletted" in (tmp_path / "map.qml").read_text()  # not replaced
