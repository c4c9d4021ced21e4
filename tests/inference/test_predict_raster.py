from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

from landcover.cli import main as cli
from landcover.inference.bundle import ModelBundle
from landcover.inference.errors import BandMismatchError
from landcover.inference.predict import Predictor, predict_array
from landcover.inference.predict_raster import predict_raster
from landcover.inference.preview import preview_png
from landcover.inference.testing import tiny_bundle


@pytest.fixture(scope="module")
def rgb_prediction(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict:
    """Predict the real Landsat scene once: class map, probabilities, COG."""
    src = shared_data / "geotiff" / "RGB.byte.tif"
    out = tmp_path_factory.mktemp("rgb")
    bundle = tiny_bundle(3, 3, mean=60.0, std=40.0)
    res = predict_raster(
        Predictor.from_bundle(bundle), src, out / "classes.tif", probabilities=out / "probs.tif",
        cog=True, window=256, overlap=64, progress=False,
    )  # fmt: skip
    return {"src": src, "res": res, "bundle": bundle}


def test_rgb_byte_keeps_crs_transform_and_nodata(rgb_prediction: dict) -> None:
    res = rgb_prediction["res"]
    with rasterio.open(rgb_prediction["src"]) as s, rasterio.open(res.classes_path) as d:
        assert d.crs == s.crs and d.crs.to_epsg() == 32618
        assert d.transform == s.transform
        assert (d.width, d.height) == (s.width, s.height) == (791, 718)
        assert d.count == 1 and d.dtypes[0] == "uint8" and d.nodata == 255
        classes = d.read(1)
        nodata_in = (s.read_masks() == 0).any(axis=0)  # any band at its nodata value
        assert nodata_in.any() and (~nodata_in).any()
        np.testing.assert_array_equal(classes == 255, nodata_in)
        assert set(np.unique(classes[~nodata_in])) <= {1, 2, 3}  # the class file's values
        cmap = d.colormap(1)
        scheme = rgb_prediction["bundle"].scheme()
        assert [cmap[v][:3] for v in (1, 2, 3)] == [tuple(c) for c in scheme.colors]
        assert d.overviews(1), "COG output has overviews"
        assert d.profile["tiled"]


def test_rgb_byte_probabilities(rgb_prediction: dict) -> None:
    res = rgb_prediction["res"]
    with rasterio.open(res.probabilities_path) as p, rasterio.open(res.classes_path) as d:
        assert p.count == 3 and p.dtypes[0] == "float32"
        assert p.crs == d.crs and p.transform == d.transform
        assert list(p.descriptions) == ["class0", "class1", "class2"]
        probs = p.read()
        classes = d.read(1)
    valid = classes != 255
    assert np.isnan(probs[:, ~valid]).all()
    np.testing.assert_allclose(probs[:, valid].sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs[:, valid].argmax(0) + 1, classes[valid])  # values 1..3


def test_streaming_equals_in_memory(tmp_path: Path, write_tif) -> None:
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, size=(3, 150, 70)).astype(np.float32)
    img[:, :3, :] = 0  # nodata rows at the top
    src = write_tif(tmp_path / "in.tif", img, nodata=0)
    pred = Predictor.from_bundle(tiny_bundle(3, 3, mean=100.0, std=50.0))
    res = predict_raster(pred, src, tmp_path / "out.tif", window=32, overlap=8,
                         probabilities=tmp_path / "p.tif", progress=False)  # fmt: skip
    assert res.windows == 6 * 3  # rows 0,24,48,72,96,118 x cols 0,24,38
    mem = predict_array(pred, torch.from_numpy(img), window=32, overlap=8,
                        valid=torch.from_numpy((img != 0).any(0)))  # fmt: skip
    with rasterio.open(res.classes_path) as d, rasterio.open(res.probabilities_path) as p:
        ref = mem.classes.numpy()  # indices; the map holds the class file's values 1..3
        np.testing.assert_array_equal(d.read(1), np.where(ref == 255, 255, ref + 1))
        probs = p.read()
    ok = ~np.isnan(probs)
    np.testing.assert_allclose(probs[ok], mem.probabilities.numpy()[ok], atol=1e-6)


def test_band_mismatch_raster(tmp_path: Path, write_tif) -> None:
    # uint16: GDAL writes a 4-band uint8 GeoTIFF as RGBA, and an alpha band is a mask
    src = write_tif(tmp_path / "four.tif", np.zeros((4, 20, 20), np.uint16))
    pred = Predictor.from_bundle(tiny_bundle(3, 3))
    with pytest.raises(BandMismatchError, match="has 4 band"):
        predict_raster(pred, src, tmp_path / "o.tif", progress=False)
    assert not (tmp_path / "o.tif").exists()


def test_unreferenced_raster_has_no_crs(tmp_path: Path, write_tif) -> None:
    """A plain image: GeoJSON and GeoPackage polygons where QGIS draws it (x = column,
    y = -row), neither claiming WGS 84. Before: the GeoJSON had y in [0, H] and no ``crs``
    member, so GDAL (and QGIS) read it as EPSG:4326."""
    import pyogrio
    import shapely

    img = np.full((3, 30, 40), 7, np.uint8)
    img[:, 10:, 20:] = 200
    src = write_tif(tmp_path / "plain.tif", img, crs=False)
    pred = Predictor.from_bundle(tiny_bundle(3, 3, mean=100.0, std=50.0))
    res = predict_raster(pred, src, tmp_path / "o.tif", geojson=tmp_path / "o.geojson",
                         gpkg=tmp_path / "o.gpkg", progress=False)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(res.classes_path) as d:
            assert d.crs is None
    fc = json.loads(res.geojson_path.read_text())
    assert fc["coordinate_system"].startswith("pixel (column, -row)")
    assert fc["crs"] == {"type": "name", "properties": {"name": 'LOCAL_CS["Undefined"]'}}
    xy = np.array([c for f in fc["features"] for ring in f["geometry"]["coordinates"]
                   for c in ring])  # fmt: skip
    assert xy[:, 0].min() == 0 and xy[:, 0].max() == 40
    assert xy[:, 1].min() == -30 and xy[:, 1].max() == 0
    # GDAL reads an undefined local CRS, not WGS 84, and the same polygons as the GeoPackage
    info = pyogrio.read_info(res.geojson_path)
    assert info["crs"].startswith('LOCAL_CS["Undefined"') and "4326" not in info["crs"]
    gj = shapely.from_wkb(pyogrio.raw.read(res.geojson_path)[2])
    gp = shapely.from_wkb(pyogrio.raw.read(tmp_path / "o.gpkg", layer="landcover")[2])
    assert len(gj) == len(gp) > 1 and shapely.equals(gj, gp).all()


def test_cli_adapt_then_predict(tmp_path: Path, support_folder: Path, write_tif,
                                capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    meta = tiny_bundle(3, 3, mean=100.0, std=50.0, tile_size=32).save(tmp_path / "m.bundle")
    adapted = tmp_path / "a.bundle"
    assert cli(["adapt", str(meta), "--support", str(support_folder), "--steps", "3",
                "-o", str(adapted), "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["tiles"] == 3 and summary["steps"] == 3
    assert ModelBundle.load(adapted).kind == "adapted"
    raster = write_tif(tmp_path / "scene.tif", np.random.default_rng(1).uniform(
        0, 200, size=(3, 100, 90)).astype(np.float32))  # fmt: skip
    out = tmp_path / "scene_classes.tif"
    assert (
        cli(
            [
                "predict",
                str(adapted),
                str(raster),
                str(out),
                "--probabilities",
                "--geojson",
                str(tmp_path / "s.geojson"),
                "--window",
                "64",
                "--overlap",
                "16",
                "--quiet",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "wrote" in printed and out.exists()
    assert (tmp_path / "scene_classes_probabilities.tif").exists()
    assert json.loads((tmp_path / "s.geojson").read_text())["features"]
    # bad input: exit status 2 and a message saying what to do
    four = write_tif(tmp_path / "four.tif", np.zeros((4, 10, 10), np.uint16))
    assert cli(["predict", str(adapted), str(four), str(tmp_path / "x.tif"), "--quiet"]) == 2
    assert "trained on 3" in capsys.readouterr().err
    assert (
        cli(["predict", str(adapted), str(raster), str(tmp_path / "y.tif"), "--overlap", "-1"]) == 2
    )


def test_png_preview(rgb_prediction: dict) -> None:
    res, bundle = rgb_prediction["res"], rgb_prediction["bundle"]
    data = preview_png(res.classes_path, bundle.scheme(), max_size=200)
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG" and img.mode == "RGBA" and max(img.size) == 200
    alpha = np.asarray(img)[..., 3]
    assert (alpha == 0).any() and (alpha == 255).any()  # nodata transparent, data opaque
