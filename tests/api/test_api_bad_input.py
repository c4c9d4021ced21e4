"""Every bad input of issue 6 item 5 (and the limits): a 4xx that says what to do, no trace.

"No trace" is checked after each rejected upload: no database row and no file left in the
storage folder (support sets, staging area).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from apihelpers import (
    HEADERS,
    pair_files,
    png_bytes,
    query_raster,
    rejected,
    settings_for,
    tiff_bytes,
    tile_pair,
    wait_status,
)
from fastapi.testclient import TestClient

from api.app import create_app
from api.models import Adaptation, JobStatus
from api.security import owner_of

GOOD_IMG, GOOD_MASK = tile_pair(0)


def files_with(image: bytes, mask: bytes, name: str = "a") -> list[Any]:
    return [("images", (f"{name}.tif", image)), ("masks", (f"{name}.png", mask))]


def test_not_a_raster(client: TestClient, data_dir: Path) -> None:
    # the extension says .tif; the content decides
    body = rejected(client, data_dir, 415, "unsupported_media_type", ["'a.tif'", "GeoTIFF"],
                    files=files_with(b"hello, I am text", GOOD_MASK))  # fmt: skip
    assert "extension" in body["detail"]


def test_corrupt_tiff(client: TestClient, data_dir: Path) -> None:
    corrupt = GOOD_IMG[:200]  # TIFF magic, truncated
    rejected(client, data_dir, 422, "corrupt_raster", ["'a.tif'", "intact"],
             files=files_with(corrupt, GOOD_MASK))  # fmt: skip


def test_image_mask_size_mismatch(client: TestClient, data_dir: Path) -> None:
    small_mask = png_bytes(np.ones((16, 16), np.uint8))
    rejected(client, data_dir, 422, "size_mismatch", ["'a.png'", "16×16", "32×32", "match"],
             files=files_with(GOOD_IMG, small_mask))  # fmt: skip


def test_band_count_differs(client: TestClient, data_dir: Path) -> None:
    four = tiff_bytes(np.ones((4, 32, 32), np.uint16))
    rejected(client, data_dir, 422, "band_mismatch", ["'a.tif'", "4 band", "expects 3", "B1"],
             files=files_with(four, GOOD_MASK))  # fmt: skip


def test_mask_values_outside_classes(client: TestClient, data_dir: Path) -> None:
    mask = np.ones((32, 32), np.uint8)
    mask[:4] = 9
    body = rejected(client, data_dir, 422, "mask_values",
                    ["'a.png'", "9 (128 px)", "1 (water)", "This model's classes are"],
                    files=files_with(GOOD_IMG, png_bytes(mask)))  # fmt: skip
    # the service's classes come from the model: no command-line advice, no server paths
    assert "--classes" not in body["detail"] and "class file" not in body["detail"]
    assert str(data_dir) not in body["detail"]


def test_all_nodata_tile(client: TestClient, data_dir: Path) -> None:
    empty = tiff_bytes(np.zeros((3, 32, 32), np.uint16), nodata=0)
    rejected(client, data_dir, 422, "all_nodata", ["'a.tif'", "nodata", "drop it"],
             files=files_with(empty, GOOD_MASK))  # fmt: skip


def test_mask_without_labels(client: TestClient, data_dir: Path) -> None:
    rejected(client, data_dir, 422, "no_labels", ["'a.tif'", "labels no pixel"],
             files=files_with(GOOD_IMG, png_bytes(np.zeros((32, 32), np.uint8))))  # fmt: skip


def test_zero_tiles(client: TestClient, data_dir: Path) -> None:
    rejected(client, data_dir, 422, "zero_tiles", ["zero tiles", "'images'", "'archive'"])
    empty_zip = io.BytesIO()
    with zipfile.ZipFile(empty_zip, "w") as zf:
        zf.writestr("readme.txt", "nothing here")
    rejected(client, data_dir, 422, "zero_tiles", ["images/"],
             files={"archive": ("s.zip", empty_zip.getvalue())})  # fmt: skip


def test_duplicate_file_names(client: TestClient, data_dir: Path) -> None:
    files = files_with(GOOD_IMG, GOOD_MASK) + files_with(GOOD_IMG, GOOD_MASK)
    rejected(client, data_dir, 422, "duplicate_names", ["'a.tif'", "unique"], files=files)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("images/a.tif", GOOD_IMG)
        zf.writestr("images/a.png", GOOD_IMG)
        zf.writestr("masks/a.png", GOOD_MASK)
    rejected(client, data_dir, 422, "duplicate_names", ["images/a.png"],
             files={"archive": ("s.zip", buf.getvalue())})  # fmt: skip


def test_unpaired_and_ambiguous_uploads(client: TestClient, data_dir: Path) -> None:
    files = [("images", ("a.tif", GOOD_IMG)), ("masks", ("b.png", GOOD_MASK))]
    rejected(client, data_dir, 422, "unpaired_files", ["'a'", "'b'", "same file stem"],
             files=files)  # fmt: skip
    files = [*files_with(GOOD_IMG, GOOD_MASK), ("archive", ("s.zip", b"PK\x05\x06" + bytes(18)))]
    rejected(client, data_dir, 422, "ambiguous_support", ["not both"], files=files)


def test_bad_zips(client: TestClient, data_dir: Path) -> None:
    rejected(client, data_dir, 415, "unsupported_media_type", ["not a zip"],
             files={"archive": ("s.zip", GOOD_IMG)})  # fmt: skip
    rejected(client, data_dir, 422, "corrupt_zip", ["corrupt zip"],
             files={"archive": ("s.zip", b"PK\x03\x04" + bytes(40))})  # fmt: skip
    # path traversal members are skipped, never written anywhere
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../images/a.tif", GOOD_IMG)
        zf.writestr("masks/a.png", GOOD_MASK)
    rejected(client, data_dir, 422, "zero_tiles", ["no files under images/"],
             files={"archive": ("s.zip", buf.getvalue())})  # fmt: skip
    unknown = "classes:\n- {name: lava, value: 1}\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("images/a.tif", GOOD_IMG)
        zf.writestr("masks/a.png", GOOD_MASK)
        zf.writestr("classes.yaml", unknown)
    rejected(client, data_dir, 422, "unknown_classes", ["lava", "water"],
             files={"archive": ("s.zip", buf.getvalue())})  # fmt: skip


def test_unknown_model_and_steps(client: TestClient, data_dir: Path) -> None:
    rejected(client, data_dir, 422, "unknown_model", ["'nope'", "tiny"],
             data={"model": "nope"}, files=pair_files(1))  # fmt: skip
    rejected(client, data_dir, 422, "validation_error", ["steps"],
             data={"model": "tiny", "steps": "0"}, files=pair_files(1))  # fmt: skip
    rejected(client, data_dir, 422, "too_many_steps", ["steps=500"],
             data={"model": "tiny", "steps": "500"}, files=pair_files(1))  # fmt: skip


def test_unknown_adaptation_id(client: TestClient) -> None:
    for path in ("/v1/adaptations/" + "0" * 32, "/v1/adaptations/../../etc"):
        r = client.get(path, headers=HEADERS)
        assert r.status_code == 404
    r = client.get("/v1/adaptations/" + "ab" * 16, headers=HEADERS)
    assert r.status_code == 404 and "GET /v1/adaptations lists yours" in r.json()["detail"]
    r = client.post("/v1/adaptations/" + "ab" * 16 + "/predict", headers=HEADERS,
                    files={"raster": ("q.tif", query_raster(32))})  # fmt: skip
    assert r.status_code == 404
    assert client.delete("/v1/adaptations/" + "ab" * 16, headers=HEADERS).status_code == 404


def _insert(client: TestClient, status: str, reason: str | None = None) -> str:
    services = client.app.state.services
    row_id = ("c" if status == "queued" else "d") * 32
    with services.sessions() as s:
        s.add(Adaptation(id=row_id, owner=owner_of(HEADERS["X-API-Key"]), model="tiny",
                         status=status, reason=reason, tiles=1, info={}))  # fmt: skip
        s.commit()
    return row_id


def test_predict_before_done(data_dir: Path, models_dir: Path) -> None:
    # a service with a runner that never starts jobs: rows stay queued
    app = create_app(settings_for(data_dir, models_dir, poll_s=3600, heartbeat_s=3600))
    with TestClient(app) as client:
        app.state.services.runner.stop()
        queued = _insert(client, JobStatus.queued.value)
        r = client.post(f"/v1/adaptations/{queued}/predict", headers=HEADERS,
                        files={"raster": ("q.tif", query_raster(32))})  # fmt: skip
        assert r.status_code == 409 and r.json()["code"] == "adaptation_not_done"
        assert "poll GET" in r.json()["detail"] and "queued" in r.json()["detail"]
        failed = _insert(client, JobStatus.failed.value, "boom; do X")
        r = client.post(f"/v1/adaptations/{failed}/predict", headers=HEADERS,
                        files={"raster": ("q.tif", query_raster(32))})  # fmt: skip
        assert r.status_code == 409 and "boom; do X" in r.json()["detail"]


def test_predict_bad_rasters(client: TestClient) -> None:
    r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                    files=pair_files(1))  # fmt: skip
    aid = wait_status(client, r.json()["id"])["id"]
    url = f"/v1/adaptations/{aid}/predict"
    cases = [
        (b"GIF89a....", 415, "unsupported_media_type"),
        (query_raster(64)[:300], 422, "corrupt_raster"),
        (tiff_bytes(np.ones((2, 16, 16), np.uint8)), 422, "band_mismatch"),
    ]
    for content, status, code in cases:
        p = client.post(url, headers=HEADERS, files={"raster": ("q.tif", content)})
        assert (p.status_code, p.json()["code"]) == (status, code), p.text
    bad_format = client.post(url + "?format=jpeg", headers=HEADERS,
                             files={"raster": ("q.tif", query_raster(16))})  # fmt: skip
    assert bad_format.status_code == 422 and "format" in bad_format.json()["detail"]
    assert list((client.app.state.settings.data_dir / "tmp").iterdir()) == []


def test_api_key_required(client: TestClient) -> None:
    r = client.get("/v1/models")
    assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
    r = client.get("/v1/models", headers={"X-API-Key": "wrong-key-0123456789"})
    assert r.status_code == 401 and r.json()["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("overrides", "status", "code", "files"),
    [
        ({"max_upload_bytes": 2000}, 413, "too_large", pair_files(2)),
        ({"max_tile_pixels": 500}, 413, "too_many_pixels", pair_files(1)),
        ({"max_tiles": 2}, 422, "too_many_tiles", pair_files(3)),
        ({"max_support_pixels": 2000}, 413, "too_many_pixels", pair_files(2)),
    ],
)
def test_limits(
    data_dir: Path, models_dir: Path, overrides: dict[str, Any], status: int, code: str,
    files: list[Any],
) -> None:  # fmt: skip
    with TestClient(create_app(settings_for(data_dir, models_dir, **overrides))) as client:
        rejected(client, data_dir, status, code, ["limit"], files=files)


def test_active_job_limit(data_dir: Path, models_dir: Path) -> None:
    settings = settings_for(data_dir, models_dir, max_active_jobs_per_key=1, poll_s=3600,
                            heartbeat_s=3600)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        client.app.state.services.runner.stop()
        first = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                            files=pair_files(1))  # fmt: skip
        assert first.status_code == 202
        second = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                             files=pair_files(1))  # fmt: skip
        assert second.status_code == 429 and int(second.headers["retry-after"]) > 0
        assert "limit 1" in second.json()["detail"]


def test_pixel_limit_on_predict(data_dir: Path, models_dir: Path) -> None:
    with TestClient(create_app(settings_for(data_dir, models_dir, max_raster_pixels=1000))) as c:
        r = c.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                   files=pair_files(1))  # fmt: skip
        aid = wait_status(c, r.json()["id"])["id"]
        big = c.post(f"/v1/adaptations/{aid}/predict", headers=HEADERS,
                     files={"raster": ("q.tif", query_raster(64))})  # fmt: skip
        assert big.status_code == 413 and "4096 pixels" in big.json()["detail"]
        assert "limit of 1000" in big.json()["detail"]
