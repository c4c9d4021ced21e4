"""Prediction on rasters and models at the edges of what users bring.

Tiny rasters (smaller than the network's size divisor or the minimum mapping unit), and
models with transductive BatchNorm (the policy of the shipped configs), whose window
outputs depend on the batch: the map must not depend on ``--batch-size`` or the engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from landcover.cli import main as cli
from landcover.inference.bundle import ModelBundle
from landcover.inference.predict import Predictor, predict_array
from landcover.inference.testing import tiny_bundle
from landcover.inference.vectorize import sieve_map


@pytest.fixture(scope="module")
def transductive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved MAML bundle whose small U-Net (depth 3) normalises with batch statistics."""
    bundle = tiny_bundle(4, 3, model_options={"width": 4, "depth": 3, "norm": "batch"},
                         learner_options={"steps": 1, "inner_lr": 0.1, "bn": "transductive"},
                         mean=100.0, std=40.0, seed=1)  # fmt: skip
    # As after training: BatchNorm's affine parameters are no longer exactly 1 and 0 (an
    # untrained one is refused by the ONNX export, which ONNX Runtime then gets wrong).
    gen = torch.Generator().manual_seed(0)
    for key, value in bundle.state.items():
        if value.ndim == 1 and value.is_floating_point() and "running" not in key:
            value.add_(0.05 * torch.randn(value.shape, generator=gen))
    path = tmp_path_factory.mktemp("bundle") / "transductive.bundle"
    bundle.save(path)
    return path


def test_sieve_of_a_map_smaller_than_the_minimum_mapping_unit() -> None:
    """GDAL refuses a sieve threshold above the pixel count; the map stays as it is."""
    tiny = np.array([[0, 1], [1, 1]], dtype=np.uint8)
    np.testing.assert_array_equal(sieve_map(tiny, 16), tiny)
    np.testing.assert_array_equal(sieve_map(np.array([[2]], np.uint8), 16), [[2]])


def test_transductive_windows_do_not_depend_on_the_batch(transductive: Path) -> None:
    """Windows are computed one at a time for batch-dependent learners: batch size 1 and
    4 give the same probabilities (before: BatchNorm statistics over 4 windows)."""
    pred = Predictor.from_bundle(ModelBundle.load(transductive))
    assert pred.per_window
    group = Predictor.from_bundle(tiny_bundle(4, 3, mean=100.0, std=40.0))
    assert not group.per_window
    torch.manual_seed(0)
    image = torch.rand(4, 150, 170) * 200
    one = predict_array(pred, image, window=64, overlap=16, batch_size=1).probabilities
    four = predict_array(pred, image, window=64, overlap=16, batch_size=4).probabilities
    torch.testing.assert_close(four, one, rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1), (7, 5)])
def test_tiny_rasters_give_maps_and_polygons(
    tmp_path: Path, write_tif, transductive: Path, shape: tuple[int, int],
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    """A raster smaller than the size divisor (8) and the minimum mapping unit (16 px):
    before, torch failed on BatchNorm over one value per channel and the sieve refused the
    raster; now torch writes its map and polygons, with the whole raster's statistics."""
    rng = np.random.default_rng(0)
    src = write_tif(tmp_path / "tiny.tif", rng.integers(1, 250, (4, *shape)).astype(np.uint16),
                    nodata=0)  # fmt: skip
    out, gj = tmp_path / "torch.tif", tmp_path / "torch.geojson"
    code = cli(["predict", str(transductive), str(src), str(out), "--geojson", str(gj),
                "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    with rasterio.open(out) as d:
        assert d.read(1).shape == shape and set(d.read(1).ravel()) <= {1, 2, 3}
    assert json.loads(gj.read_text())["features"]


def test_onnxruntime_refuses_transductive_models_in_plain_words(
    tmp_path: Path, write_tif, transductive: Path, capsys: pytest.CaptureFixture
) -> None:
    """Before, the onnxruntime engine normalised each window with its own statistics
    while torch now uses the raster's: it says so instead of giving another map."""
    rng = np.random.default_rng(1)
    src = write_tif(tmp_path / "scene.tif", rng.integers(1, 250, (4, 64, 64)).astype(np.uint16),
                    nodata=0)  # fmt: skip
    out = tmp_path / "onnx.tif"
    assert cli(["predict", str(transductive), str(src), str(out), "--engine", "onnxruntime",
                "--quiet", "--no-style"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "transductive BatchNorm" in err and "use --engine torch" in err
    assert not out.exists()


def test_rgba_raster_uses_its_alpha_band_as_the_mask(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """RGBA imagery (drone orthomosaics, QGIS exports) for an RGB model: the alpha band is
    the mask, not a fourth band (before: refused as 4 bands for a 3-band model); both
    engines, and with the onnxruntime engine's defaults the torch map."""
    bundle = tiny_bundle(3, 3, mean=100.0, std=40.0).save(tmp_path / "rgb.bundle")
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 255, (3, 90, 110)).astype(np.uint8)
    alpha = np.full((90, 110), 255, np.uint8)
    alpha[:20, :30] = 0
    profile = {"driver": "GTiff", "width": 110, "height": 90, "count": 4, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": rasterio.Affine(2, 0, 4e5, 0, -2, 5e6),
               "photometric": "RGB", "alpha": "YES"}  # fmt: skip
    with rasterio.open(tmp_path / "rgba.tif", "w", **profile) as dst:
        dst.write(np.concatenate([rgb, alpha[None]]))
    maps = {}
    for engine in ("torch", "onnxruntime"):
        out = tmp_path / f"{engine}.tif"
        assert cli(["predict", str(bundle), str(tmp_path / "rgba.tif"), str(out), "--engine",
                    engine, "--quiet", "--no-style"]) == 0, capsys.readouterr().err  # fmt: skip
        with rasterio.open(out) as d:
            maps[engine] = d.read(1)
        np.testing.assert_array_equal(maps[engine] == 255, alpha == 0)
    assert (maps["torch"] == maps["onnxruntime"]).mean() > 0.999
    image = torch.from_numpy(rgb.astype(np.float32))
    ref = predict_array(Predictor.from_bundle(ModelBundle.load(bundle)), image,
                        valid=torch.from_numpy(alpha > 0)).classes  # fmt: skip
    ref = np.where(ref.numpy() == 255, 255, ref.numpy() + 1)  # the class file's values 1..3
    np.testing.assert_array_equal(maps["torch"], ref)


def test_geotransform_without_crs_is_kept(tmp_path: Path) -> None:
    """A raster with a geotransform but no CRS (world file, local grid): the class map and
    the polygons keep its coordinates (before: the map lost the transform and the
    polygons were in pixel coordinates)."""
    from landcover.inference.predict_raster import predict_raster

    path = tmp_path / "local.tif"
    transform = rasterio.Affine(0.5, 0, 1000, 0, -0.5, 2000)
    img = np.full((3, 40, 60), 80, np.float32)
    img[:, :, 30:] = 200
    with rasterio.open(path, "w", driver="GTiff", width=60, height=40, count=3,
                       dtype="float32", transform=transform) as dst:  # fmt: skip
        dst.write(img)
    pred = Predictor.from_bundle(tiny_bundle(3, 3, mean=100.0, std=40.0))
    res = predict_raster(pred, path, tmp_path / "map.tif", geojson=tmp_path / "map.geojson",
                         progress=False)  # fmt: skip
    with rasterio.open(res.classes_path) as d:
        assert d.transform == transform and d.crs is None
    fc = json.loads((tmp_path / "map.geojson").read_text())
    assert fc["coordinate_system"] == "the raster's coordinates (no CRS)"
    xy = np.array([c for f in fc["features"] for c in f["geometry"]["coordinates"][0]])
    assert xy[:, 0].min() == 1000 and xy[:, 0].max() == 1030
    assert xy[:, 1].min() == 1980 and xy[:, 1].max() == 2000


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--window", "64", "--overlap", "100"], "must be smaller than --window"),
        (["--overlap", "300"], "overlap (300) must be smaller than the window (256)"),
        (["--probabilities", "{out}"], "--probabilities {out} is also the output"),
        (["--device", "nonsense"], "unknown --device"),
    ],
)
def test_cli_refuses_bad_options_in_plain_words(
    tmp_path: Path, write_tif, transductive: Path, capsys: pytest.CaptureFixture,
    extra: list[str], message: str,
) -> None:  # fmt: skip
    """Before: an overlap past the window was clamped (a slow crawl of windows), the class
    map was overwritten by the probabilities, and a bad device or an unwritable folder
    ended in a traceback."""
    src = write_tif(tmp_path / "in.tif", np.full((4, 40, 40), 100, np.uint16))
    out = str(tmp_path / "map.tif")
    extra = [e.format(out=out) for e in extra]
    assert cli(["predict", str(transductive), str(src), out, "--quiet", *extra]) == 2
    assert message.format(out=out) in capsys.readouterr().err
    assert not Path(out).exists()


def test_cli_unwritable_output_folder_is_a_clear_error(
    tmp_path: Path, write_tif, transductive: Path, capsys: pytest.CaptureFixture
) -> None:
    src = write_tif(tmp_path / "in.tif", np.full((4, 40, 40), 100, np.uint16))
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "map.tif"
    assert cli(["predict", str(transductive), str(src), str(out), "--quiet"]) == 2
    assert "cannot write the outputs" in capsys.readouterr().err
