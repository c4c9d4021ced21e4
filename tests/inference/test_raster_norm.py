"""One normalisation statistic per raster: maps that do not depend on windows or batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

from landcover.inference.errors import BundleError
from landcover.inference.predict import Predictor, predict_array
from landcover.inference.predict_raster import predict_raster
from landcover.inference.raster_norm import (
    MAX_WINDOWS,
    STATS_WINDOW,
    NormStatistics,
    grid_windows,
)
from landcover.inference.testing import tiny_bundle

TRANSDUCTIVE = {"steps": 1, "inner_lr": 0.1, "bn": "transductive"}


def _image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth structure with a bright half: windows' own statistics differ a lot."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 200, (3, h // 16 + 1, w // 16 + 1))
    img = coarse.repeat(16, 1).repeat(16, 2)[:, :h, :w] + rng.normal(0, 10, (3, h, w))
    img[:, :, w // 2 :] += 300  # one side of the raster is much brighter
    return torch.from_numpy(img.astype(np.float32))


def test_map_does_not_depend_on_windows_or_batch() -> None:
    bundle = tiny_bundle(3, 4, learner="maml", learner_options=TRANSDUCTIVE, seed=2,
                         model_options={"width": 8, "depth": 2, "norm": "batch"},
                         mean=250.0, std=150.0)  # fmt: skip
    predictor = Predictor.from_bundle(bundle)
    assert predictor.norm_stats is not None and predictor.norm_stats.layers
    image = _image(128, 192)
    whole = predict_array(predictor, image, window=256, overlap=0)
    small = predict_array(predictor, image, window=96, overlap=48, batch_size=1)
    batched = predict_array(predictor, image, window=96, overlap=48, batch_size=6)
    # the same windows in other batches: the same numbers
    torch.testing.assert_close(batched.probabilities, small.probabilities, atol=1e-5, rtol=0)
    agree = (small.classes == whole.classes).float().mean().item()
    # before: each window normalised with its own statistics (measured 0.49 / 0.51)
    predictor.norm_stats, stats = None, predictor.norm_stats
    before = predict_array(predictor, image, window=96, overlap=48, batch_size=1)
    before_agree = (before.classes == whole.classes).float().mean().item()
    assert agree >= 0.999 and before_agree < 0.9, (agree, before_agree)
    assert stats.stats == {}  # cleared after the raster


def test_one_window_raster_gets_exactly_its_own_statistics() -> None:
    """A raster of one window, on the pooling grid: the raster's statistics are that
    window's, so the map is exactly what the transductive forward of the window gives."""
    bundle = tiny_bundle(3, 3, learner="maml", learner_options=TRANSDUCTIVE, seed=1,
                         model_options={"width": 4, "depth": 2, "norm": "batch"},
                         mean=250.0, std=150.0)  # fmt: skip
    predictor = Predictor.from_bundle(bundle)
    image = _image(96, 128)
    ref = predictor.probabilities(image[None])[0]  # no statistics set: the batch's own
    got = predict_array(predictor, image, window=128, overlap=0).probabilities
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


def test_statistics_are_those_of_the_valid_pixels_layer_by_layer() -> None:
    """BatchNorm, then a 1x1 convolution, then GroupNorm: the first layer's statistics
    are the mean/variance of the weighted pixels of all windows; the second's are those
    of the convolution of the input normalised with the first's (not the window's own)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1), nn.GroupNorm(2, 4))
    model.train()  # transductive: batch statistics unless fixed
    stats = NormStatistics(model)
    windows = [torch.randn(1, 3, 8, 8) * 3 + 5, torch.randn(1, 3, 8, 12) - 2]
    weights = [torch.ones(1, 1, 8, 8), torch.ones(1, 1, 8, 12)]
    weights[1][..., 6:] = 0  # nodata / not owned: must not count
    windows[1][..., 6:] = 1e4
    stats.gather(model, zip(windows, weights))
    pixels = torch.cat([windows[0].flatten(2), windows[1][..., :6].flatten(2)], 2)[0]
    mean, var = stats.stats["0"]
    torch.testing.assert_close(mean, pixels.mean(1))
    torch.testing.assert_close(var, pixels.var(1, unbiased=False))
    norm = (pixels - mean[:, None]) / (var[:, None] + 1e-5).sqrt()
    feats = model[1](norm.T[:, :, None, None])[:, :, 0, 0].T  # (4, pixels)
    groups = feats.reshape(2, -1)
    mean2, var2 = stats.stats["2"]
    torch.testing.assert_close(mean2, groups.mean(1).repeat_interleave(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(var2, groups.var(1, unbiased=False).repeat_interleave(2),
                               atol=1e-5, rtol=1e-4)  # fmt: skip
    # with the statistics set, a window's output no longer depends on the window
    whole = model(windows[0])
    part = model(windows[0][..., :4, :4])
    torch.testing.assert_close(part, whole[..., :4, :4])
    stats.clear()
    assert not torch.allclose(model(windows[0][..., :4, :4]), whole[..., :4, :4])


def test_grid_owns_every_pixel_once_on_the_pooling_grid() -> None:
    for h, w, d in [(846, 1099, 32), (3000, 2100, 16), (40, 50, 8), (1024, 1024, 1)]:
        cells = grid_windows(h, w, d)
        count = np.zeros((h, w), int)
        for y, x, rows, cols, top, bottom, left, right in cells:
            assert y % d == 0 and x % d == 0 and rows <= STATS_WINDOW and cols <= STATS_WINDOW
            assert y + rows <= h and x + cols <= w
            count[y + top : y + bottom, x + left : x + right] += 1
        assert (count == 1).all(), (h, w)
    assert len(grid_windows(20000, 20000, 32)) == MAX_WINDOWS


def test_onnxruntime_engine_refuses_batch_dependent_models() -> None:
    bundle = tiny_bundle(3, 3, learner="maml", learner_options=TRANSDUCTIVE,
                         model_options={"width": 4, "depth": 2, "norm": "batch"})  # fmt: skip
    with pytest.raises(BundleError, match=r"transductive BatchNorm.*use --engine torch"):
        Predictor.from_bundle(bundle, engine="onnxruntime")
    group = tiny_bundle(3, 3, model_options={"width": 4, "depth": 2, "norm": "group"})
    assert Predictor.from_bundle(group).norm_stats is None  # per window, batch-free


def test_all_nodata_raster_maps_to_nodata(tmp_path: Path, write_tif) -> None:
    bundle = tiny_bundle(3, 3, learner="maml", learner_options=TRANSDUCTIVE,
                         model_options={"width": 4, "depth": 2, "norm": "batch"})  # fmt: skip
    src = write_tif(tmp_path / "empty.tif", np.zeros((3, 40, 50), np.uint16), nodata=0)
    out = tmp_path / "map.tif"
    predict_raster(Predictor.from_bundle(bundle), src, out, window=32, progress=False)
    with rasterio.open(out) as ds:
        assert (ds.read(1) == ds.nodata).all()
