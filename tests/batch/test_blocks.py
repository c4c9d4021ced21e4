"""Blocks of a large scene put together give exactly ``landcover predict``'s map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from landcover.batch.blocks import plan_blocks
from landcover.batch.manifest import PredictOptions
from landcover.batch.records import file_digest
from landcover.batch.scenes import Scene
from landcover.batch.worker import RegionModel, assemble_scene, map_block
from landcover.inference.adapt import adapt_folder
from landcover.inference.bundle import ModelBundle
from landcover.inference.predict import Predictor
from landcover.inference.predict_raster import predict_raster
from landcover.inference.testing import tiny_bundle
from tests.batch.batchhelpers import same_raster
from tests.inference.conftest import _write_support_folder, _write_tif


@pytest.mark.parametrize(
    ("height", "width", "window", "overlap", "block_pixels"),
    [
        (1000, 100, 64, 16, 10_000),  # many blocks, last window shifted back
        (530, 77, 96, 40, 20_000),  # overlap > window / 3, sizes off the pooling grid
        (300, 300, 64, 0, 30_000),  # no overlap
        (70, 50, 64, 16, 1),  # one row of windows: one block
    ],
)
def test_blocks_cover_each_row_once(height, width, window, overlap, block_pixels) -> None:
    blocks = plan_blocks(height, width, window, overlap, 4, block_pixels)
    rows = [r for b in blocks for r in range(*b.rows)]
    assert rows == list(range(height))
    for b in blocks:
        assert b.read[0] <= b.rows[0] and b.rows[1] <= b.read[1] <= height


@pytest.fixture(scope="module")
def adapted(tmp_path_factory) -> tuple[Path, RegionModel]:
    root = tmp_path_factory.mktemp("adapted")
    support = _write_support_folder(root / "support")
    meta = tiny_bundle(3, 3, mean=100.0, std=50.0)
    path = adapt_folder(meta, support, 2).bundle.save(root / "adapted.bundle")
    return path, RegionModel("r", file_digest(path), path.read_bytes())


@pytest.mark.parametrize(
    ("height", "width", "window", "overlap", "block_pixels", "nodata"),
    [
        (700, 130, 64, 16, 65536 // 4, False),
        (517, 91, 96, 40, 12_000, True),  # off-grid sizes, nodata pixels, big overlap
    ],
)
def test_assembled_blocks_equal_predict(
    tmp_path, adapted, height, width, window, overlap, block_pixels, nodata
) -> None:
    bundle_path, model = adapted
    rng = np.random.default_rng(3)
    image = rng.normal(100, 50, (3, height, width)).astype(np.float32)
    if nodata:
        image[:, 100:180, 20:60] = -9999
        image[:, -30:, :] = -9999
    src = _write_tif(tmp_path / "scene.tif", image, nodata=-9999 if nodata else None)
    opts = PredictOptions(window=window, overlap=overlap, probabilities=True)
    scene = Scene(id="scene", region="r", input=src, classes=tmp_path / "out" / "scene.tif",
                  record=tmp_path / "out" / "scene.json", work=tmp_path / "work",
                  probabilities=tmp_path / "out" / "scene_probabilities.tif",
                  provenance={"path": str(src)})  # fmt: skip
    blocks = plan_blocks(height, width, window, overlap, 4, block_pixels)
    assert len(blocks) >= 3
    seconds = [map_block(model, scene, b, opts) for b in blocks]
    record = assemble_scene(model, scene, blocks, opts, *seconds)
    assert record["blocks"] == len(blocks)

    predictor = Predictor.from_bundle(ModelBundle.load(bundle_path))
    ref = predict_raster(predictor, src, tmp_path / "ref" / "scene.tif", window=window,
                         overlap=overlap, probabilities=tmp_path / "ref" / "p.tif",
                         style=True, cog=True, progress=False)  # fmt: skip
    same_raster(scene.classes, ref.classes_path)
    same_raster(scene.probabilities, ref.probabilities_path)
    assert not scene.work.exists()  # scratch removed
    assert record["areas"]["nodata_pixels"] == (int((image[0] == -9999).sum()) if nodata else 0)


@pytest.mark.parametrize(
    ("pixels", "slots", "total", "blocks"),
    [
        (16384**2, 2, 16384**2, 2),  # one huge scene: one block per worker thread
        (16384**2, 2, 9 * 16384**2, 1),  # nine equal scenes keep 2 workers busy: no halos
        (16384**2, 2, 16384**2 + 8 * 4096**2, 2),  # the huge one among small ones: cut
        (16384**2, 4, 2 * 16384**2, 2),  # two huge scenes on four workers: two blocks each
        (16384**2, 3, 2 * 16384**2, 2),  # a share of 2/3 scene: ceil(1.5) blocks
        (16384**2, 64, 16384**2, 16),  # no block below block_pixels (4096²)
        (4096**2, 8, 4096**2, 1),  # a scene of one block budget is never cut
        (16384**2, 2, 0, 2),  # a total that leaves the scene out still cuts it as one
    ],
)
def test_block_budget(pixels, slots, total, blocks) -> None:
    from landcover.batch.engine import block_budget

    budget = block_budget(4096**2, pixels, slots, total)
    assert -(-pixels // budget) == blocks
