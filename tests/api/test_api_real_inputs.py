"""Inputs met when the service was run on real data (Dubai aerial tiles, the Landsat scene).

Each is a 4xx that says what was wrong and what to do, never an internal message:

* a PNG cut off in transit (GDAL reads the missing rows as zeros without a word, so a
  cut-off mask used to be refused for "colours in no class" and a cut-off image to be
  accepted with made-up pixels);
* a raster that fits in one block of the network's size divisor (a BatchNorm model's
  batch statistics then hold one value per channel: torch's "Expected more than 1 value
  per channel when training" reached the client);
* mask colours that mean "unlabeled" but are not the model's ignore colour (Tile 3's
  black pixels): the 422 says how a zip with a class file declares them, and that works;
* a mask saved as JPEG (like the Dubai images): the 422 says that JPEG blurs the colours;
* real-size tiles (800x650) priced as if every pixel were trained on: the adaptation works
  on a crop pool of bounded size, so its compute estimate counts that pool;
* an RGBA PNG (a screenshot or rendered export) for a 3-band model: the band mismatch
  names the alpha band and how to drop it.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from apihelpers import (
    HEADERS,
    SCHEME,
    pair_files,
    png_bytes,
    rejected,
    settings_for,
    tile_pair,
    wait_status,
)
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from landcover.inference.adapt import POOL_PIXELS
from landcover.inference.testing import tiny_bundle


def test_cut_off_png_is_a_damaged_file(client: TestClient, data_dir: Path) -> None:
    image, mask = tile_pair(0, size=64)
    cut = mask[: len(mask) // 2]
    files = [("images", ("a.tif", image)), ("masks", ("a.png", cut))]
    rejected(
        client, data_dir, 422, "corrupt_raster", ["'a.png'", "damaged PNG", "again"], files=files
    )
    # a cut-off PNG image with an intact mask, and a cut-off raster to predict
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    png = png_bytes(rgb)
    files = [("images", ("b.png", png[: len(png) // 2])), ("masks", ("b.tif", image))]
    rejected(client, data_dir, 422, "corrupt_raster", ["'b.png'", "damaged PNG"], files=files)
    r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                    files=pair_files(1))  # fmt: skip
    aid = wait_status(client, r.json()["id"])["id"]
    query = png_bytes(rgb.transpose(2, 0, 1)[0])  # one band: the bands check comes later
    p = client.post(f"/v1/adaptations/{aid}/predict", headers=HEADERS,
                    files={"raster": ("q.png", query[: len(query) // 2])})  # fmt: skip
    assert p.status_code == 422 and p.json()["code"] == "corrupt_raster", p.text
    assert "damaged PNG" in p.json()["detail"]


def test_raster_within_one_block_is_refused_in_plain_words(data_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "bn_models"
    models.mkdir()
    bundle = tiny_bundle(3, SCHEME.num_classes, tile_size=32, mean=100.0, std=50.0,
                         model_options={"width": 4, "depth": 2, "norm": "batch"})  # fmt: skip
    replace(bundle, bands=["B1", "B2", "B3"], classes=SCHEME.to_dict(), inner_steps=2,
            info={}).save(models / "tiny.bundle")  # fmt: skip
    with TestClient(create_app(settings_for(data_dir, models))) as client:
        r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                        files=pair_files(2))  # fmt: skip
        aid = wait_status(client, r.json()["id"])["id"]
        url = f"/v1/adaptations/{aid}/predict"
        for side, status in ((3, 422), (4, 422), (5, 200)):
            raster = tile_pair(1, size=side)[0]
            p = client.post(url, headers=HEADERS, files={"raster": ("small.tif", raster)})
            assert p.status_code == status, (side, p.text)
            if status == 422:
                detail = p.json()["detail"]
                assert p.json()["code"] == "invalid_raster"
                assert f"'small.tif' is {side}×{side} px, too small" in detail
                assert "more than 4 px" in detail and "per channel" not in detail
        tiny = ("raster", ("s.tif", tile_pair(1, 2)[0]))
        seg = client.post("/v1/segment", headers=HEADERS, data={"model": "tiny"},
                          files=[*pair_files(1), tiny])  # fmt: skip
        assert seg.status_code == 422 and "too small" in seg.json()["detail"], seg.text


def test_unlabeled_colour_outside_the_scheme_is_declared_by_a_class_file(
    client: TestClient, data_dir: Path
) -> None:
    image, _ = tile_pair(0)
    values = np.random.default_rng(0).integers(1, 4, size=(32, 32)).astype(np.uint8)
    values[:2] = 7  # this annotator's "unlabeled"
    files = [("images", ("a.tif", image)), ("masks", ("a.png", png_bytes(values)))]
    words = ["7 (64 px)", "classes.yaml", "'ignore'", "zip"]
    detail = rejected(client, data_dir, 422, "mask_values", words, files=files)["detail"]
    assert "--classes" not in detail
    classes = "classes:\n  - {name: water, value: 1}\n  - {name: forest, value: 2}\n" \
              "  - {name: field, value: 3}\nignore: [0, 7]\n"  # fmt: skip
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("images/a.tif", image)
        zf.writestr("masks/a.png", png_bytes(values))
        zf.writestr("classes.yaml", classes)
    r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                    files={"archive": ("region.zip", buf.getvalue())})  # fmt: skip
    assert r.status_code == 202, r.text
    assert wait_status(client, r.json()["id"])["status"] == "done"


def test_jpeg_mask_is_explained(client: TestClient, data_dir: Path) -> None:
    image, _ = tile_pair(0)
    values = np.random.default_rng(0).integers(1, 4, size=(32, 32)).astype(np.uint8) * 80
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, format="JPEG", quality=75)
    files = [("images", ("a.tif", image)), ("masks", ("a.png", buf.getvalue()))]
    rejected(
        client,
        data_dir,
        422,
        "mask_values",
        ["'a.png'", "is a JPEG", "PNG or GeoTIFF"],
        files=files,
    )


def test_adapt_cost_counts_the_crop_pool_not_every_tile_pixel(
    data_dir: Path, models_dir: Path
) -> None:
    # Three 800x650 Dubai tiles with `make demo`'s bundle (25 steps) were a 413 "send fewer
    # tiles", though the adaptation computes on a 65,536-px crop pool whatever they hold.
    with TestClient(create_app(settings_for(data_dir, models_dir))) as probe:
        per_pixel = probe.get("/v1/models/tiny", headers=HEADERS).json()["flop_per_pixel"]
    pool, tiles = POOL_PIXELS, 4 * 256 * 256  # four tiles, four pools' worth of pixels
    limit = 0.9 * (2 + 2) * tiles * 3 * per_pixel / 1e9  # below "every pixel" at 2 steps
    assert 3 * (2 + 2) * pool * 3 * per_pixel / 1e9 < limit  # above the pool's estimate
    settings = settings_for(data_dir, models_dir, max_adapt_gflop=limit)
    with TestClient(create_app(settings)) as client:
        ok = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                         files=pair_files(4, size=256))  # fmt: skip
        assert ok.status_code == 202, ok.text
        assert wait_status(client, ok.json()["id"])["status"] == "done"
        costly = client.post("/v1/adaptations", headers=HEADERS,
                             data={"model": "tiny", "steps": "20"},
                             files=pair_files(4, size=256))  # fmt: skip
        assert costly.status_code == 413 and costly.json()["code"] == "too_costly"
        detail = costly.json()["detail"]
        assert "fewer steps" in detail and "cost no more" in detail, detail
        assert f"{pool} of the {tiles} support pixels" in detail


def test_alpha_band_is_named_in_the_band_mismatch(client: TestClient, data_dir: Path) -> None:
    rgba = np.random.default_rng(0).integers(0, 255, (32, 32, 4), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")  # a screenshot / rendered export
    mask = tile_pair(0)[1]
    files = [("images", ("shot.png", buf.getvalue())), ("masks", ("shot.tif", mask))]
    words = ["'shot.png' has 4 band(s)", "band 4 is an alpha", "-b 1 -b 2 -b 3"]
    rejected(client, data_dir, 422, "band_mismatch", words, files=files)
    r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                    files=pair_files(1))  # fmt: skip
    aid = wait_status(client, r.json()["id"])["id"]
    p = client.post(f"/v1/adaptations/{aid}/predict", headers=HEADERS,
                    files={"raster": ("map.png", buf.getvalue())})  # fmt: skip
    assert p.status_code == 422 and "band 4 is an alpha" in p.json()["detail"], p.text
    four = client.post(f"/v1/adaptations/{aid}/predict", headers=HEADERS,
                       files={"raster": ("b.tif", tile_pair(0, bands=4)[0])})  # fmt: skip
    assert four.status_code == 422 and "alpha" not in four.json()["detail"], four.text
