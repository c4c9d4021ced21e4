"""QGIS Deepness runs an exported model end to end, and maps what ``landcover predict`` maps.

Deepness' own code (its ``Segmentor`` model class and ``MapProcessorSegmentation``, the
plugin's full map processing including the per-class vector layers) runs in a QGIS child
process (:mod:`qgis_env`) on a real aerial tile. Skipped, with the reason, without QGIS or
the plugin (``make clients`` installs QGIS; Deepness: see :mod:`qgis_env`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from landcover.cli import main as cli

from .conftest import write_geotiff
from .qgis_env import deepness_missing, run_in_qgis

pytestmark = pytest.mark.skipif(deepness_missing() is not None, reason=str(deepness_missing()))


def test_deepness_map_processor_agrees_with_landcover_predict(aerial, tmp_path: Path) -> None:
    """Before: the stride-4 graph declared symbolic output dims and the processor crashed
    ('str' object cannot be interpreted as an integer); with them patched, seg_thresh 0.5
    turned half the tile into class 0 (agreement 0.487).

    Deepness pads its processing extent with zeros at the top and right (extent_utils:
    ``N * stride + tile``) where ``predict`` mirrors the raster, so pixels within the
    network's reach of those edges differ; and its tiles start ``pad`` rows above the
    raster, on the network's pooling grid (32 px here) only when ``pad`` is a multiple of
    it: 832 rows (pad 192) are, the tile's 846 (pad 178) are not (agreement 0.90).
    """
    from landcover.bench.predict.windows import fit_bundle

    image, mask = aerial
    # the shipped folder configuration's network (small U-Net, stride 4), per-step BatchNorm
    bundle = fit_bundle(image, mask, learner="mamlpp", steps=200).save(tmp_path / "m.bundle")
    h, w = 832, image.shape[2]
    raster = write_geotiff(tmp_path / "tile.tif", image[:, :h], pixel_m=0.5)
    onnx = tmp_path / "m.onnx"
    assert cli(["export", str(bundle), "--onnx", "-o", str(onnx), "--pixel-size", "0.5"]) == 0
    ours = tmp_path / "ours.tif"
    assert cli(["predict", str(bundle), str(raster), str(ours), "--quiet", "--no-style"]) == 0
    with rasterio.open(ours) as ds:
        landcover_map = ds.read(1)
    got = run_in_qgis(Path(__file__).with_name("deepness_run.py"), str(onnx), str(raster),
                      str(tmp_path / "deepness.npy"))  # fmt: skip
    assert got["success"], got["message"]
    classes = 5  # building, land, road, vegetation, water
    assert got["output_shapes"] == [["batch", classes, 1024, 1024]] and got["classes"] == [classes]
    assert got["threshold"] == 0.0 and got["resolution_cm"] == 50.0
    deepness_map = np.load(tmp_path / "deepness.npy")[0].astype(np.int64) - 1  # class + 1
    assert deepness_map.shape == landcover_map.shape == (h, w)
    same = deepness_map == landcover_map
    inner = float(same[64:-64, 64:-64].mean())
    print(f"Deepness vs landcover predict: agreement {same.mean():.4f}, {inner:.4f} beyond "
          "64 px of the edges")  # fmt: skip
    assert inner >= 0.99 and same.mean() >= 0.95
    assert len(np.unique(landcover_map)) >= 3  # a real map, not one class
