"""A class-map GeoTIFF alone (no ``.qml``, no ``.aux.xml``) in QGIS 3.22: its legend.

QGIS builds the default paletted renderer of a raster without a style from every entry of
its GDAL colour table, one legend item per entry (``QgsGdalProviderBase::colorTable``), and
GDAL reads ``2 ** bits`` entries from a TIFF palette. A map packed into 2 bits (values 1..3,
nodata 0) lists nodata and the 3 classes; the default nodata 255 needs 8 bits and lists 256.
``landcover predict --map-nodata 0`` writes such a map.
Opened in a child process (:mod:`qgis_vectors`); skipped, with the reason, without QGIS.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from landcover.cli import main as cli
from landcover.geo.classes import ClassScheme
from landcover.geo.raster import RasterProfile
from landcover.geo.writer import write_class_map
from landcover.inference.testing import tiny_bundle

from .qgis_env import qgis_missing, run_in_qgis

pytestmark = pytest.mark.skipif(qgis_missing() is not None, reason=str(qgis_missing()))

SCRIPT = Path(__file__).with_name("qgis_vectors.py")
THREE = ClassScheme(names=("building", "road", "water"), values=(1, 2, 3),
                    colors=((60, 16, 152), (110, 193, 228), (226, 169, 41)))  # fmt: skip
PROFILE = RasterProfile(width=64, height=64, count=3, dtype="uint8", crs=CRS.from_epsg(32640),
                        transform=Affine(0.5, 0, 300_000, 0, -0.5, 2_790_000), nodata=None,
                        descriptions=(None,) * 3)  # fmt: skip


def _hex(rgb: tuple[int, ...]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def test_a_class_map_without_sidecars_lists_its_classes_in_qgis(tmp_path: Path) -> None:
    """Before: 256 legend entries, 252 of them black, for any class map."""
    classes = (np.arange(64)[None, :] * 3 // 64).repeat(64, 0)  # indices 0..2 in bands
    valid = np.ones((64, 64), bool)
    valid[:16, :16] = False
    short = write_class_map(tmp_path / "short.tif", classes, PROFILE, THREE, valid=valid,
                            nodata=0, cog=True)  # fmt: skip
    full = write_class_map(tmp_path / "full.tif", classes, PROFILE, THREE, valid=valid)
    assert not list(tmp_path.glob("*.qml")) and not list(tmp_path.glob("*.aux.xml"))
    got = run_in_qgis(SCRIPT, str(short), str(full))["layers"]
    layer = got[str(short)]
    assert layer["valid"] and layer["renderer"] == "paletted" and layer["crs"] == "EPSG:32640"
    # the legend: nodata (transparent) and the 3 classes at the class file's values
    assert layer["nodata"] == 0
    assert [c[0] for c in layer["classes"]] == [0, 1, 2, 3]
    assert layer["classes"][0][2] == 0  # nodata's entry is transparent
    assert [c[1] for c in layer["classes"][1:]] == [_hex(rgb) for rgb in THREE.colors]
    assert [item[1] for item in layer["legend"]] == ["#000000", *(_hex(c) for c in THREE.colors)]
    # drawn: nodata transparent, each class in its colour
    drawn = np.array([[px[1] for px in row] for row in layer["drawn"]])
    assert (drawn[~valid] == 0).all() and (drawn[valid] == 255).all()
    colours = {_hex(rgb) for rgb in THREE.colors}
    assert {px[0] for row, ok in zip(layer["drawn"], valid) for px, v in zip(row, ok) if v} \
        == colours  # fmt: skip
    # the default nodata 255 needs 8 bits: QGIS lists all 256 entries of the TIFF palette
    assert got[str(full)]["renderer"] == "paletted" and len(got[str(full)]["legend"]) == 256


def test_predict_with_map_nodata_0_lists_the_classes_in_qgis(tmp_path: Path) -> None:
    """``landcover predict --map-nodata 0 --no-style``: the GeoTIFF alone, legend of 4."""
    bundle = replace(tiny_bundle(3, 3, mean=100.0, std=40.0, seed=5), classes=THREE.to_dict())
    img = np.random.default_rng(1).normal(100, 60, (3, 64, 64)).astype(np.float32)
    img[:, :16, :16] = np.nan
    with rasterio.open(tmp_path / "in.tif", "w", driver="GTiff", width=64, height=64, count=3,
                       dtype="float32", nodata=float("nan"), crs=PROFILE.crs,
                       transform=PROFILE.transform) as dst:  # fmt: skip
        dst.write(img)
    out = tmp_path / "map.tif"
    assert cli(["predict", str(bundle.save(tmp_path / "m.bundle")), str(tmp_path / "in.tif"),
                str(out), "--quiet", "--no-style", "--cog", "--map-nodata", "0"]) == 0  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "m.bundle", "map.tif"]
    layer = run_in_qgis(SCRIPT, str(out))["layers"][str(out)]
    assert layer["renderer"] == "paletted" and layer["nodata"] == 0
    assert [c[0] for c in layer["classes"]] == [0, 1, 2, 3] and layer["classes"][0][2] == 0
    assert [c[1] for c in layer["classes"][1:]] == [_hex(rgb) for rgb in THREE.colors]
    drawn = np.array([[px[1] for px in row] for row in layer["drawn"]])
    assert (drawn[:16, :16] == 0).all() and (drawn[16:, 16:] == 255).all()
