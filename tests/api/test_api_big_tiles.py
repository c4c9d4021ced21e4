"""Support tiles of real sizes: the service cuts them into the crops adaptation uses.

* a Dubai aerial tile at the 1126×1058 px of the dataset's larger tiles (JPEG, colour mask
  read with the dataset's class file; the shared copy holds Tiles 1-4, at most 1099×846,
  so Tile 4's first pair is resampled to that size: over the old 1,048,576-px limit)
  adapts without a manual crop; what is stored for the job is the bounded crop pool, not
  the whole tile;
* a 4096×4096 tile (a common aerial tile size) is accepted with the default limits;
* every too-large tile is named at once in the 413;
* ``GET /v1/limits`` reports the limits the service applies;
* :func:`api.cutting.crops_of_tile` keeps exactly crops of the pool's grid, which the
  adaptation's own cutting gives back unchanged.
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from apihelpers import HEADERS, TINY_UNET, png_bytes, settings_for, wait_status
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from api.cutting import crops_of_tile
from api.settings import Settings
from landcover.geo.classes import ClassScheme
from landcover.inference.adapt import POOL_PIXELS, crop_pool
from landcover.inference.testing import tiny_bundle

ROOT = Path(__file__).resolve().parents[2]
DUBAI = ROOT / "data" / "samples" / "dubai-aerial"
DUBAI_CLASSES = ROOT / "configs" / "classes" / "dubai-aerial.yaml"
TILE = 64


@pytest.fixture(scope="module")
def dubai_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with an untrained 3-band bundle of the Dubai classes (``dubai``)."""
    scheme = ClassScheme.from_file(DUBAI_CLASSES)
    folder = tmp_path_factory.mktemp("dubai-models")
    bundle = tiny_bundle(3, scheme.num_classes, model_options=TINY_UNET, tile_size=TILE,
                         mean=120.0, std=50.0)  # fmt: skip
    replace(bundle, bands=["red", "green", "blue"], classes=scheme.to_dict(), inner_steps=2,
            info={}).save(folder / "dubai.bundle")  # fmt: skip
    return folder


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def real_size_pair() -> tuple[bytes, bytes]:
    """Tile 4's first JPEG and its palette mask at 1126×1058 px (JPEG and PNG bytes)."""
    image = Image.open(DUBAI / "Tile 4" / "images" / "image_part_001.jpg")
    mask = Image.open(DUBAI / "Tile 4" / "masks" / "image_part_001.png")
    big = image.resize((1126, 1058), Image.Resampling.BILINEAR)
    big_mask = mask.resize((1126, 1058), Image.Resampling.NEAREST)  # palette kept
    out_image, out_mask = io.BytesIO(), io.BytesIO()
    big.save(out_image, format="JPEG", quality=90)
    big_mask.save(out_mask, format="PNG")
    assert big.size == big_mask.size == (1126, 1058) and 1126 * 1058 > 1024 * 1024
    return out_image.getvalue(), out_mask.getvalue()


@pytest.mark.skipif(not DUBAI.is_dir(), reason="the dubai-aerial sample is not here")
def test_real_dubai_tile_adapts_without_a_manual_crop(data_dir: Path, dubai_models: Path) -> None:
    image, mask = real_size_pair()
    settings = settings_for(data_dir, dubai_models)
    with TestClient(create_app(settings)) as client:
        files = [("images", ("image_part_001.jpg", image)),
                 ("masks", ("image_part_001.png", mask))]  # fmt: skip
        r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "dubai"}, files=files)
        assert r.status_code == 202, r.text
        aid = r.json()["id"]
        # the job keeps the crop pool of the tile (at most POOL_PIXELS), not the whole tile
        images, masks = client.app.state.services.store.load_support(aid)  # type: ignore[attr-defined]
        assert len(images) == 1
        assert images[0].shape == (3, TILE, POOL_PIXELS // TILE), images[0].shape
        assert masks[0].shape == (TILE, POOL_PIXELS // TILE)
        done = wait_status(client, aid, timeout=120)
        assert done["status"] == "done", done
        assert done["tiles"] == 1 and done["report"]["steps_tried"] >= 1


def test_a_4096_tile_is_accepted_and_cut_with_default_limits(
    data_dir: Path, models_dir: Path
) -> None:
    assert Settings().max_tile_pixels >= 4096 * 4096
    size = 4096
    cols = np.arange(size) * 3 // size  # three vertical class bands
    mask = (1 + cols).astype(np.uint8)[None].repeat(size, 0)
    rgb = np.stack([mask * 60] * 3, axis=-1).astype(np.uint8)
    settings = settings_for(data_dir, models_dir)  # default tile and support limits
    with TestClient(create_app(settings)) as client:
        files = [("images", ("big.jpg", jpeg_bytes(rgb))), ("masks", ("big.png", png_bytes(mask)))]
        r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"}, files=files)
        assert r.status_code == 202, r.text
        images, _ = client.app.state.services.store.load_support(r.json()["id"])  # type: ignore[attr-defined]
        assert images[0].shape[-1] * images[0].shape[-2] == POOL_PIXELS
        assert wait_status(client, r.json()["id"], timeout=120)["status"] == "done"


def test_every_too_large_tile_is_named_at_once(data_dir: Path, models_dir: Path) -> None:
    settings = settings_for(data_dir, models_dir, max_tile_pixels=40 * 40)
    mask = np.ones((48, 48), np.uint8)
    small = np.ones((32, 32), np.uint8)
    files = []
    for name, m in (("first", mask), ("second", mask), ("fine", small)):
        files += [("images", (f"{name}.jpg", jpeg_bytes(np.stack([m * 90] * 3, -1)))),
                  ("masks", (f"{name}.png", png_bytes(m)))]  # fmt: skip
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"}, files=files)
    assert r.status_code == 413 and r.json()["code"] == "too_many_pixels", r.text
    detail = r.json()["detail"]
    assert "2 tile(s)" in detail and "first.jpg' (48×48)" in detail
    assert "second.jpg' (48×48)" in detail and "fine" not in detail


def test_limits_endpoint_reports_the_settings(data_dir: Path, models_dir: Path) -> None:
    settings = settings_for(data_dir, models_dir, max_steps=7, max_tile_pixels=12345)
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/limits").status_code == 401
        limits = client.get("/v1/limits", headers=HEADERS).json()
    assert limits["max_steps"] == 7 and limits["max_tile_pixels"] == 12345
    assert limits["max_upload_bytes"] == settings.max_upload_bytes
    assert limits["max_tiles"] == settings.max_tiles
    assert limits["formats"] == ["GeoTIFF", "PNG", "JPEG"]


def test_crops_of_tile_keeps_pool_crops_that_adaptation_cuts_back_unchanged() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 150, 230)).astype(np.float32)
    mask = rng.integers(0, 3, (150, 230)).astype(np.int64)
    mask[:, :40] = 255  # unlabeled columns: their crops are never kept
    t, budget = 32, 4 * 32 * 32
    strip, strip_mask = crops_of_tile(image, mask, t, 255, budget)
    assert strip.shape == (2, t, 4 * t) and strip_mask.shape == (t, 4 * t)
    # the adaptation's own cut of the strip gives the same crops as the pool of the tile
    x, y, _ = crop_pool([torch.from_numpy(strip)], [torch.from_numpy(strip_mask)], t, 255,
                        max_pixels=budget)  # fmt: skip
    xt, yt, _ = crop_pool([torch.from_numpy(image)], [torch.from_numpy(mask)], t, 255,
                          max_pixels=budget)  # fmt: skip
    assert torch.equal(x, xt) and torch.equal(y, yt)
    # each kept crop is a real window of the tile
    for k in range(4):
        crop = strip[:, :, k * t : (k + 1) * t]
        hits = [(r, c) for r in range(150 - t + 1) for c in range(230 - t + 1)
                if np.array_equal(image[:, r : r + t, c : c + t], crop)]  # fmt: skip
        assert hits, f"crop {k} is not a window of the tile"
    # a tile within the budget is kept whole
    same_image, same_mask = crops_of_tile(image[:, :64, :64], mask[:64, :64], t, 255, budget)
    assert same_image.shape == (2, 64, 64) and same_mask.shape == (64, 64)
