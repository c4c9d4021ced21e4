"""``landcover predict --map-nodata``: a class map whose colour table lists its classes.

With nodata 255 a class map needs 8 bits and its colour table, which QGIS shows as the
legend of the GeoTIFF alone, 256 entries. ``--map-nodata 0`` for classes 1..3 gives a
2-bit map with 4 entries (nodata and the classes), the same map otherwise: the same
classes at the same pixels, the same polygons.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio

from landcover.cli import main as cli
from landcover.geo.classes import ClassScheme
from landcover.inference.testing import tiny_bundle

SCHEME = ClassScheme(names=("building", "road", "water"), values=(1, 2, 3),
                     colors=((60, 16, 152), (110, 193, 228), (226, 169, 41)))  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bundle, the input (nodata corner) and its map with the default nodata 255."""
    tmp = tmp_path_factory.mktemp("nodata")
    bundle = replace(tiny_bundle(3, 3, mean=100.0, std=40.0, seed=5), classes=SCHEME.to_dict())
    rng = np.random.default_rng(1)
    img = rng.normal(100, 60, (3, 70, 90)).astype(np.float32)
    img[:, :9, :9] = np.nan
    profile = {"driver": "GTiff", "width": 90, "height": 70, "count": 3, "dtype": "float32",
               "nodata": float("nan"), "crs": "EPSG:32633",
               "transform": rasterio.Affine(10, 0, 4e5, 0, -10, 5e6)}  # fmt: skip
    with rasterio.open(tmp / "in.tif", "w", **profile) as dst:
        dst.write(img)
    out = {"dir": tmp, "bundle": bundle.save(tmp / "m.bundle"), "input": tmp / "in.tif"}
    assert cli(["predict", str(out["bundle"]), str(out["input"]), str(tmp / "d.tif"), "--quiet",
                "--gpkg", str(tmp / "d.gpkg"), "--min-area", "0"]) == 0  # fmt: skip
    return out


def test_map_nodata_0_packs_the_map_into_2_bits(
    run: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    tmp = run["dir"]
    capsys.readouterr()
    assert cli(["predict", str(run["bundle"]), str(run["input"]), str(tmp / "z.tif"), "--quiet",
                "--gpkg", str(tmp / "z.gpkg"), "--min-area", "0", "--cog", "--map-nodata", "0",
                "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["nodata"] == 0
    with rasterio.open(tmp / "d.tif") as d, rasterio.open(tmp / "z.tif") as z:
        default, packed, cmap = d.read(1), z.read(1), z.colormap(1)
        assert d.nodata == 255 and len(d.colormap(1)) == 256
        assert z.nodata == 0 and z.tags(1, ns="IMAGE_STRUCTURE")["NBITS"] == "2"
        assert z.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    assert sorted(cmap) == [0, 1, 2, 3] and cmap[0][3] == 0  # nodata transparent
    assert [cmap[v][:3] for v in (1, 2, 3)] == list(SCHEME.colors)
    # the same map but for the nodata value
    assert (packed[:9, :9] == 0).all() and len(np.unique(packed[9:, 9:])) > 1
    np.testing.assert_array_equal(packed, np.where(default == 255, 0, default))
    # the sidecars and the polygons follow: no polygon for nodata, the same polygons
    aux = (tmp / "z.tif.aux.xml").read_text()
    assert "<Category>building</Category>" in aux
    ids = [pyogrio.raw.read(tmp / f"{n}.gpkg", layer="landcover", columns=["class_id"])[3][0]
           for n in ("d", "z")]  # fmt: skip
    np.testing.assert_array_equal(ids[0], ids[1])
    assert set(ids[1]) <= {1, 2, 3}


@pytest.mark.parametrize(("value", "why"), [("2", "class 'road' has it"),
                                            ("300", "not in 0..255")])  # fmt: skip
def test_a_map_nodata_a_class_has_is_refused(
    run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, value: str, why: str
) -> None:
    out = tmp_path / "m.tif"
    assert cli(["predict", str(run["bundle"]), str(run["input"]), str(out), "--quiet",
                "--map-nodata", value]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert why in err and "--map-nodata" in err
    assert not out.exists()
