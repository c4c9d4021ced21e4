"""Against a real server: ``landcover serve`` in a subprocess on 127.0.0.1 and a free port.

The same flow as the TestClient test, 20 concurrent adaptation requests (no error, no
lost record) and the GeoJSON of an unreferenced image; the schemathesis run is in
``test_api_fuzz.py``. The server is always
terminated, whatever happens in the tests.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pyogrio
import pytest
import rasterio
from apihelpers import CRS_UTM, HEADERS, KEY_B, pair_files, query_raster, served, wait_status
from PIL import Image

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "LANDCOVER_MAX_ACTIVE_JOBS_PER_KEY": "32",
        "LANDCOVER_JOB_WORKERS": "2",
        "LANDCOVER_POLL_S": "0.1",
    }
    with served(tmp_path_factory.mktemp("served"), env) as base:
        yield base


def test_flow_against_uvicorn(server: str) -> None:
    with httpx.Client(base_url=server, timeout=60) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").json()["status"] == "ready"
        assert [m["name"] for m in client.get("/v1/models", headers=HEADERS).json()] == ["tiny"]
        r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                        files=pair_files(3))  # fmt: skip
        assert r.status_code == 202, r.text
        done = wait_status(client, r.json()["id"], timeout=120.0, interval=0.1)
        assert done["status"] == "done"
        p = client.post(f"/v1/adaptations/{done['id']}/predict", headers=HEADERS,
                        files={"raster": ("q.tif", query_raster(70))})  # fmt: skip
        assert p.status_code == 200
        with rasterio.io.MemoryFile(p.content) as mem, mem.open() as ds:
            assert ds.crs == CRS_UTM and ds.nodata == 255 and ds.shape == (70, 70)
        other = {"X-API-Key": KEY_B}
        assert client.get(f"/v1/adaptations/{done['id']}", headers=other).status_code == 404
        assert client.delete(f"/v1/adaptations/{done['id']}", headers=HEADERS).status_code == 204


def test_twenty_concurrent_adaptations(server: str) -> None:
    def submit(i: int) -> httpx.Response:
        with httpx.Client(base_url=server, timeout=120) as c:
            return c.post("/v1/adaptations", headers={**HEADERS, "Idempotency-Key": f"c{i}"},
                          data={"model": "tiny"}, files=pair_files(1 + i % 3))  # fmt: skip

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(submit, range(20)))
    assert [r.status_code for r in responses] == [202] * 20, [r.text for r in responses]
    ids = [r.json()["id"] for r in responses]
    assert len(set(ids)) == 20
    with httpx.Client(base_url=server, timeout=60) as client:
        finished = [wait_status(client, aid, timeout=120.0, interval=0.1) for aid in ids]
        assert [f["status"] for f in finished] == ["done"] * 20, finished
        assert [f["tiles"] for f in finished] == [1 + i % 3 for i in range(20)]
        listed = client.get("/v1/adaptations?limit=500", headers=HEADERS).json()["items"]
        assert set(ids) <= {a["id"] for a in listed}


def test_geojson_of_an_unreferenced_image_lies_where_qgis_draws_it(
    server: str, tmp_path: Path
) -> None:
    """A plain PNG (no CRS, no geotransform): QGIS draws it at x in [0, W], y in [-H, 0].
    Before: the polygons were at y in [0, H] with no ``crs`` member, read as EPSG:4326."""
    image = np.full((48, 64, 3), 60, np.uint8)
    image[:, 32:] = 180
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    with httpx.Client(base_url=server, timeout=60) as client:
        r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                        files=pair_files(2))  # fmt: skip
        assert r.status_code == 202, r.text
        done = wait_status(client, r.json()["id"], timeout=120.0, interval=0.1)
        assert done["status"] == "done"
        p = client.post(f"/v1/adaptations/{done['id']}/predict?format=geojson", headers=HEADERS,
                        files={"raster": ("plain.png", buf.getvalue())})  # fmt: skip
    assert p.status_code == 200, p.text
    assert p.headers["content-type"] == "application/geo+json"
    fc = json.loads(p.content)
    assert fc["crs"]["properties"]["name"] == 'LOCAL_CS["Undefined"]'
    xy = np.array([c for f in fc["features"] for ring in f["geometry"]["coordinates"]
                   for c in ring])  # fmt: skip
    assert xy[:, 0].min() == 0 and xy[:, 0].max() == 64
    assert xy[:, 1].min() == -48 and xy[:, 1].max() == 0
    path = tmp_path / "plain.geojson"
    path.write_bytes(p.content)
    info = pyogrio.read_info(path)  # GDAL: an undefined local CRS, not WGS 84
    assert info["crs"].startswith('LOCAL_CS["Undefined"') and "4326" not in info["crs"]
    assert info["features"] == len(fc["features"]) > 0
