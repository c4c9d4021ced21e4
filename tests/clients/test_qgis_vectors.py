"""``landcover predict`` vectors open in QGIS styled by class, where the raster is, no warning.

QGIS 3.22 (Debian 12's ``python3-qgis``, with GDAL 3.6) opens the outputs in a child
process (:mod:`qgis_vectors`). Skipped, with the reason, without QGIS (``make clients``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from landcover.cli import main as cli
from landcover.inference.testing import tiny_bundle

from .conftest import TILE, write_geotiff
from .qgis_env import qgis_missing, run_in_qgis

pytestmark = pytest.mark.skipif(qgis_missing() is not None, reason=str(qgis_missing()))

SCRIPT = Path(__file__).with_name("qgis_vectors.py")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained RGB bundle (per-step BatchNorm) with 3 named, coloured classes."""
    from dataclasses import replace

    from landcover.geo.classes import ClassScheme

    scheme = ClassScheme(names=("building", "road", "water"), values=(1, 2, 3),
                         colors=((60, 16, 152), (110, 193, 228), (226, 169, 41)))  # fmt: skip
    b = tiny_bundle(3, 3, learner="mamlpp", model_options={"width": 4, "depth": 2},
                    mean=120.0, std=60.0, seed=3)  # fmt: skip
    path = tmp_path_factory.mktemp("b") / "m.bundle"
    return replace(b, classes=scheme.to_dict()).save(path)


def _check_styled(layer: dict) -> None:
    assert layer["valid"] and layer["features"] > 0
    assert layer["renderer"] == "categorizedSymbol" and layer["attribute"] == "class_name"
    assert layer["categories"] == [["building", "building", "#3c1098"],
                                   ["road", "road", "#6ec1e4"],
                                   ["water", "water", "#e2a929"]]  # fmt: skip


def test_gpkg_and_geojson_open_styled_without_warnings(
    aerial, bundle: Path, tmp_path: Path
) -> None:
    """Before: both opened as a single symbol, and every GeoPackage open warned
    'GeoPackage 1.4 ... may only be partially supported' in GDAL 3.6 / QGIS 3.22."""
    image, _ = aerial
    raster = write_geotiff(tmp_path / "tile.tif", image[:, :384, :512])
    gpkg, gj = tmp_path / "map.gpkg", tmp_path / "polygons.geojson"
    assert cli(["predict", str(bundle), str(raster), str(tmp_path / "map.tif"), "--quiet",
                "--gpkg", str(gpkg), "--geojson", str(gj)]) == 0  # fmt: skip
    assert (tmp_path / "polygons.qml").is_file()
    got = run_in_qgis(SCRIPT, str(gpkg), str(gj))
    layers, messages = got["layers"], got["messages"]
    for path in (gpkg, gj):
        _check_styled(layers[str(path)])
    assert layers[str(gpkg)]["crs"] == "EPSG:32640" and layers[str(gj)]["crs"] == "EPSG:4326"
    logged = [*messages, *got["stderr"].splitlines()]
    assert not [m for m in logged if "GeoPackage" in m or m.startswith(("Warning", "ERROR"))]


def test_vectors_of_an_unreferenced_jpeg_overlay_it_in_qgis(
    aerial, bundle: Path, tmp_path: Path
) -> None:
    """A plain JPEG: QGIS draws it at y in [-H, 0]; the polygons were at y in [0, H] and the
    GeoJSON was read as EPSG:4326 with 'latitudes' up to the image height (then refused)."""
    jpeg = tmp_path / "tile.jpg"
    shutil.copy(TILE, jpeg)
    gpkg, gj = tmp_path / "map.gpkg", tmp_path / "polygons.geojson"
    assert cli(["predict", str(bundle), str(jpeg), str(tmp_path / "map.tif"), "--quiet",
                "--gpkg", str(gpkg), "--geojson", str(gj)]) == 0  # fmt: skip
    got = run_in_qgis(SCRIPT, str(gpkg), str(gj), str(jpeg))
    img = got["layers"][str(jpeg)]
    assert img["extent"] == [0.0, -846.0, 1099.0, 0.0]
    for path in (gpkg, gj):
        vec = got["layers"][str(path)]
        _check_styled(vec)
        # no spatial reference claimed: GDAL's local "Undefined SRS" / "Undefined" CRS,
        # not EPSG:4326
        assert vec["crs"] in ("", None) and vec["crs_name"] in ("Undefined SRS", "Undefined")
        assert not vec["geographic"]
        x0, y0, x1, y1 = vec["extent"]
        assert 0 <= x0 < 5 and -846 <= y0 < -841 and 1094 < x1 <= 1099 and -5 < y1 <= 0
