"""A model whose output depends on the window, served (issue 21, item 3).

A learner with transductive BatchNorm normalises with the statistics of the batch at hand;
mapped window by window, its map would change with the service's window. The service maps
it with one statistic per raster (the same code as ``landcover predict``), so the map does
not depend on the window, and refuses its ONNX export (which could not carry that
statistic) in words.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from apihelpers import HEADERS, SCHEME, pair_files, settings_for, tiff_bytes, wait_status
from fastapi.testclient import TestClient

from api.app import create_app
from landcover.inference.predict import Predictor
from landcover.inference.testing import tiny_bundle

TRANSDUCTIVE = {"steps": 1, "inner_lr": 0.1, "bn": "transductive"}


@pytest.fixture(scope="module")
def transductive_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder whose ``tiny`` model uses transductive BatchNorm."""
    folder = tmp_path_factory.mktemp("transductive")
    bundle = tiny_bundle(3, SCHEME.num_classes, learner="maml", learner_options=TRANSDUCTIVE,
                         model_options={"width": 8, "depth": 2, "norm": "batch"}, seed=2,
                         tile_size=32, mean=250.0, std=150.0)  # fmt: skip
    replace(bundle, bands=["B1", "B2", "B3"], classes=SCHEME.to_dict(), info={}).save(
        folder / "tiny.bundle"
    )
    assert Predictor.from_bundle(bundle).window_dependent
    return folder


def _query() -> bytes:
    """Smooth structure with a much brighter half: windows' own statistics differ a lot."""
    rng = np.random.default_rng(0)
    coarse = rng.uniform(0, 200, (3, 8, 10))
    img = coarse.repeat(16, 1).repeat(16, 2) + rng.normal(0, 10, (3, 128, 160))
    img[:, :, 80:] += 300
    return tiff_bytes(img.astype(np.uint16))


def _segment(data_dir: Path, models: Path, window: int | None) -> np.ndarray:
    app = create_app(settings_for(data_dir, models, window=window))
    with TestClient(app) as c:
        r = c.post("/v1/segment", headers=HEADERS, data={"model": "tiny", "steps": "1"},
                   files=[*pair_files(2), ("raster", ("q.tif", _query()))])  # fmt: skip
    assert r.status_code == 200, r.text
    with rasterio.io.MemoryFile(r.content) as mem, mem.open() as ds:
        return ds.read(1)


def test_served_map_of_a_transductive_model_does_not_depend_on_the_window(
    data_dir: Path, transductive_models: Path
) -> None:
    """96-px windows agree with one whole-raster window on 0.997 of the pixels (the rest:
    zero padding at small windows' borders); with each window's own statistics, 0.77."""
    whole = _segment(data_dir / "a", transductive_models, None)  # one window (256 px)
    small = _segment(data_dir / "b", transductive_models, 96)
    assert len(np.unique(whole)) > 1
    assert (whole == small).mean() >= 0.99


def test_its_onnx_export_is_refused_in_words(data_dir: Path, transductive_models: Path) -> None:
    app = create_app(settings_for(data_dir, transductive_models))
    with TestClient(app) as c:
        r = c.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny", "steps": "1"},
                   files=pair_files(2))  # fmt: skip
        assert r.status_code == 202, r.text
        aid = r.json()["id"]
        assert wait_status(c, aid)["status"] == "done"
        got = c.get(f"/v1/adaptations/{aid}/model?format=onnx", headers=HEADERS)
    assert got.status_code == 409 and got.json()["code"] == "not_exportable"
    assert "cannot be exported as ONNX" in got.json()["detail"]
