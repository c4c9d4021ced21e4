"""End to end with TestClient on a tiny real bundle: models, adapt, poll, predict, delete."""

from __future__ import annotations

import io
import json

import numpy as np
import rasterio
from apihelpers import (
    CRS_UTM,
    HEADERS,
    SCHEME,
    TRANSFORM,
    pair_files,
    query_raster,
    stored_entries,
    support_zip,
    wait_status,
)
from fastapi.testclient import TestClient
from PIL import Image


def test_health_and_ready_need_no_key(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["models"] == ["tiny"] and ready.json()["database"] is True


def test_models_list_bands_classes_colours(client: TestClient) -> None:
    r = client.get("/v1/models", headers=HEADERS)
    assert r.status_code == 200
    (model,) = r.json()
    assert model["name"] == "tiny" and model["bands"] == ["B1", "B2", "B3"]
    assert [c["name"] for c in model["classes"]] == list(SCHEME.names)
    assert [tuple(c["color"]) for c in model["classes"]] == list(SCHEME.colors)
    assert [c["value"] for c in model["classes"]] == [1, 2, 3]
    assert model["tile_size"] == 32 and model["learner"] == "maml"
    assert client.get("/v1/models/tiny", headers=HEADERS).json() == model
    assert client.get("/v1/models/nope", headers=HEADERS).status_code == 404


def test_adapt_poll_predict_delete(client: TestClient, data_dir) -> None:
    r = client.post(
        "/v1/adaptations", headers=HEADERS, data={"model": "tiny", "steps": "3"},
        files=pair_files(3),
    )  # fmt: skip
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] in ("queued", "running", "done") and body["tiles"] == 3
    assert r.headers["location"] == f"/v1/adaptations/{body['id']}"
    done = wait_status(client, body["id"])
    assert done["status"] == "done", done
    assert 0.0 <= done["support_miou_before"] <= 1.0
    assert 0.0 <= done["support_miou_after"] <= 1.0
    assert done["steps"] == 3
    report = done["report"]  # the guard's report (issue 11): never worse than unadapted
    assert report["steps_tried"] == 3 and 0 <= report["steps_kept"] <= 3
    assert report["support_miou_after"] >= report["support_miou_before"]
    t = done["timings"]
    assert t["adapt_s"] > 0 and t["total_s"] >= t["queued_s"] >= 0

    raster = query_raster(80)
    p = client.post(
        f"/v1/adaptations/{body['id']}/predict", headers=HEADERS,
        files={"raster": ("q.tif", raster)},
    )  # fmt: skip
    assert p.status_code == 200, p.text
    assert p.headers["content-type"] == "image/tiff"
    with rasterio.io.MemoryFile(p.content) as mem, mem.open() as ds:
        assert ds.crs == CRS_UTM and ds.transform == TRANSFORM
        assert ds.nodata == 255 and (ds.width, ds.height) == (80, 80)
        classes = ds.read(1)
        cmap = ds.colormap(1)
    assert (classes[:10, :10] == 255).all()
    assert set(np.unique(classes[10:, 10:])) <= {1, 2, 3}  # the class file's values
    assert cmap[1][:3] == SCHEME.colors[0] and cmap[3][:3] == SCHEME.colors[2]

    png = client.post(
        f"/v1/adaptations/{body['id']}/predict?format=png", headers=HEADERS,
        files={"raster": ("q.tif", raster)},
    )  # fmt: skip
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    img = np.asarray(Image.open(io.BytesIO(png.content)))
    assert img.shape == (80, 80, 4) and (img[:10, :10, 3] == 0).all()
    assert (img[10:, 10:, 3] == 255).all()
    # each pixel in the colour of the class its value names (values 1..3, not 0..2)
    colours = np.array([(0, 0, 0), *SCHEME.colors], dtype=np.uint8)
    np.testing.assert_array_equal(img[10:, 10:, :3], colours[classes[10:, 10:]])

    gj = client.post(
        f"/v1/adaptations/{body['id']}/predict?format=geojson", headers=HEADERS,
        files={"raster": ("q.tif", raster)},
    )  # fmt: skip
    assert gj.status_code == 200 and gj.headers["content-type"] == "application/geo+json"
    features = json.loads(gj.content)
    assert features["type"] == "FeatureCollection" and features["features"]

    listed = client.get("/v1/adaptations", headers=HEADERS).json()["items"]
    assert [a["id"] for a in listed] == [body["id"]]
    assert client.delete(f"/v1/adaptations/{body['id']}", headers=HEADERS).status_code == 204
    assert client.get(f"/v1/adaptations/{body['id']}", headers=HEADERS).status_code == 404
    assert stored_entries(data_dir) == []


def test_adapt_from_zip_with_class_file(client: TestClient) -> None:
    # the zip's class file orders classes differently: masks are remapped by name
    classes = "classes:\n- {name: field, value: 3}\n- {name: water, value: 1}\n" \
              "- {name: forest, value: 2}\n"  # fmt: skip
    r = client.post(
        "/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
        files={"archive": ("support.zip", support_zip(2, classes))},
    )  # fmt: skip
    assert r.status_code == 202, r.text
    done = wait_status(client, r.json()["id"])
    assert done["status"] == "done" and done["tiles"] == 2 and done["steps"] is None


def test_segment_in_one_call(client: TestClient) -> None:
    r = client.post(
        "/v1/segment?format=png", headers=HEADERS, data={"model": "tiny", "steps": "1"},
        files=[*pair_files(2), ("raster", ("q.tif", query_raster(48)))],
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert 0.0 <= float(r.headers["x-support-miou-after"]) <= 1.0


def test_idempotency_key_returns_the_first_adaptation(client: TestClient) -> None:
    headers = {**HEADERS, "Idempotency-Key": "job-42"}
    first = client.post("/v1/adaptations", headers=headers, data={"model": "tiny"},
                        files=pair_files(1))  # fmt: skip
    again = client.post("/v1/adaptations", headers=headers, data={"model": "tiny"},
                        files=pair_files(1))  # fmt: skip
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert len(client.get("/v1/adaptations", headers=HEADERS).json()["items"]) == 1


def test_openapi_documents_v1_with_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/models", "/v1/adaptations", "/v1/segment"} <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    assert schemas["AdaptationOut"]["examples"] and schemas["ModelInfo"]["examples"]
    assert "APIKeyHeader" in spec["components"]["securitySchemes"]
    assert client.get("/docs").status_code == 200


def test_predict_real_landsat_scene_keeps_georeferencing(client: TestClient, shared_data) -> None:
    scene = shared_data / "geotiff" / "RGB.byte.tif"
    r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                    files=pair_files(2))  # fmt: skip
    aid = wait_status(client, r.json()["id"])["id"]
    p = client.post(f"/v1/adaptations/{aid}/predict", headers=HEADERS,
                    files={"raster": ("RGB.byte.tif", scene.read_bytes())})  # fmt: skip
    assert p.status_code == 200, p.text
    with rasterio.open(scene) as src:
        crs, transform, shape = src.crs, src.transform, src.shape
        nodata = (src.read_masks() == 0).any(axis=0)  # any band at its nodata value
    with rasterio.io.MemoryFile(p.content) as mem, mem.open() as ds:
        assert ds.crs == crs and ds.transform == transform and ds.shape == shape
        out = ds.read(1)
    assert (out[nodata] == 255).all() and np.isin(out[~nodata], (1, 2, 3)).all()
