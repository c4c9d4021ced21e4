"""The ten findings of issue 14, each pinned by a test (SQLite and PostgreSQL).

1 class-file bombs, 2 no connection held through long work and 503 on overload,
3 idempotency fingerprints, 4 non-finite support pixels, 5 compute limits, time limits,
fairness and rate limits, 6 storage shared by replicas, 7 the database down at start,
8 no client data left by failed jobs, 9 readable bundles, 10 the schema matches the server.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from apihelpers import (
    HEADERS,
    KEY_B,
    pair_files,
    png_bytes,
    query_raster,
    settings_for,
    support_zip,
    tiff_bytes,
    wait_status,
)
from fastapi.testclient import TestClient
from sqlalchemy import event

from api.app import create_app
from api.models import Adaptation, JobStatus
from api.security import owner_of

OTHER = {"X-API-Key": KEY_B}
CLASSES = "classes:\n  - {name: water, value: 1}\n  - {name: forest, value: 2}\n"


def _adapt(client: TestClient, files=None, headers=HEADERS, **data):
    return client.post("/v1/adaptations", headers=headers, data={"model": "tiny", **data},
                       files=files or pair_files(1))  # fmt: skip


def _zip_with(classes: str | bytes) -> list:
    return [("archive", ("s.zip", support_zip(2, classes=classes)))]  # type: ignore[arg-type]


# ---------------------------------------------------------------------- 1 class files
def test_class_file_alias_bomb_is_refused_quickly_with_a_short_message(client) -> None:
    laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        laughs.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb = "\n".join(laughs) + "\nclasses: *i\n"
    assert len(bomb) < 800  # expands to 9**9 strings without the guard
    start = time.perf_counter()
    r = _adapt(client, files=_zip_with(bomb))
    assert time.perf_counter() - start < 10
    assert r.status_code == 422 and r.json()["code"] == "invalid_class_file"
    assert "aliases" in r.json()["detail"] and len(r.content) < 1000


def test_class_file_size_cap_and_short_excerpts(client) -> None:
    big = CLASSES + "# " + "x" * 70_000 + "\n"
    r = _adapt(client, files=_zip_with(big))
    assert r.status_code == 422 and r.json()["code"] == "invalid_class_file"
    assert "limit" in r.json()["detail"] and len(r.content) < 1000
    junk = "classes: [" + "{name: " * 3000 + "\n"  # invalid YAML with a long line
    r = _adapt(client, files=_zip_with(junk))
    assert r.status_code == 422 and len(r.json()["detail"]) <= 400, r.json()["detail"]


# ---------------------------------------------------------------------- 2 connections
def test_no_connection_is_held_through_predictions(data_dir: Path, models_dir: Path) -> None:
    # 20 slow predictions at once (2 run, the others wait for a slot or get a 429) on a
    # pool of 2 connections: status polls and /ready must still answer at once
    settings = settings_for(data_dir, models_dir, db_pool_size=2, db_pool_timeout_s=2.0,
                            predict_concurrency=2, predict_wait_s=60)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        aid = wait_status(client, _adapt(client).json()["id"])["id"]
        engine = client.app.state.services.engine
        real = engine.predict

        def slow(*args, **kwargs):
            time.sleep(1.0)
            return real(*args, **kwargs)

        engine.predict = slow

        def predict(_: int) -> int:
            raster = {"raster": ("q.tif", query_raster(40))}
            return client.post(f"/v1/adaptations/{aid}/predict", headers=HEADERS,
                               files=raster).status_code  # fmt: skip

        with ThreadPoolExecutor(20) as pool:
            running = pool.map(predict, range(20))
            time.sleep(1.0)
            polls = []
            for _ in range(5):
                start = time.perf_counter()
                polls.append((client.get(f"/v1/adaptations/{aid}", headers=HEADERS).status_code,
                              time.perf_counter() - start))  # fmt: skip
            start = time.perf_counter()
            ready = client.get("/ready").status_code, time.perf_counter() - start
            codes = list(running)
    assert [code for code, _ in polls] == [200] * 5 and ready[0] == 200
    assert max(t for _, t in polls) < 1.5 and ready[1] < 1.5, (polls, ready)
    assert set(codes) <= {200, 429} and codes.count(200) >= 2, codes


def test_exhausted_pool_is_a_503_with_retry_after(data_dir: Path, models_dir: Path) -> None:
    settings = settings_for(data_dir, models_dir, db_pool_size=1, db_pool_timeout_s=0.3)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        aid = _adapt(client).json()["id"]
        db = client.app.state.services.db
        held = [db.connect() for _ in range(6)]  # the pool (1) and its overflow (5)
        try:
            r = client.get(f"/v1/adaptations/{aid}", headers=HEADERS)
            assert client.get("/ready").status_code == 200  # its own connection
        finally:
            for conn in held:
                conn.close()
        assert r.status_code == 503 and r.json()["code"] == "overloaded"
        assert int(r.headers["Retry-After"]) > 0
        assert client.get(f"/v1/adaptations/{aid}", headers=HEADERS).status_code == 200


# ---------------------------------------------------------------------- 3 idempotency
def test_idempotency_key_with_another_body_is_a_422(client) -> None:
    headers = {**HEADERS, "Idempotency-Key": "retry-7"}
    first = _adapt(client, headers=headers, files=pair_files(2))
    same = _adapt(client, headers=headers, files=pair_files(2))
    assert first.status_code == same.status_code == 202
    assert same.json()["id"] == first.json()["id"]
    garbage = [("images", ("t0.tif", b"garbage")), ("masks", ("t0.png", b"x"))]
    for files, data in ((pair_files(1), {}), (pair_files(2), {"steps": "3"}), (garbage, {})):
        r = _adapt(client, headers=headers, files=files, **data)
        assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused", r.text
        assert first.json()["id"] in r.json()["detail"]
    assert len(client.get("/v1/adaptations", headers=HEADERS).json()["items"]) == 1


# ---------------------------------------------------------------------- 4 non-finite pixels
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_support_pixels_are_refused(client, bad: float) -> None:
    mask = np.random.default_rng(0).integers(1, 4, (32, 32)).astype(np.uint8)
    image = (mask[None].repeat(3, 0) * 60.0).astype(np.float32)
    image[1, 5:9, 5:9] = bad
    files = [("images", ("n.tif", tiff_bytes(image))), ("masks", ("n.png", png_bytes(mask)))]
    r = _adapt(client, files=files)
    assert r.status_code == 422 and r.json()["code"] == "non_finite_pixels", r.text
    assert "'n.tif'" in r.json()["detail"] and "16 pixel" in r.json()["detail"]
    assert client.get("/v1/adaptations", headers=HEADERS).json()["items"] == []


def test_nan_declared_as_nodata_is_accepted(client) -> None:
    mask = np.random.default_rng(0).integers(1, 4, (32, 32)).astype(np.uint8)
    image = (mask[None].repeat(3, 0) * 60.0).astype(np.float32)
    image[:, :4, :4] = np.nan
    files = [("images", ("n.tif", tiff_bytes(image, nodata=np.nan))),
             ("masks", ("n.png", png_bytes(mask)))]  # fmt: skip
    r = _adapt(client, files=files)
    assert r.status_code == 202, r.text
    assert wait_status(client, r.json()["id"])["status"] == "done"


# ---------------------------------------------------------------------- 5 compute and rate
def test_limits_are_in_compute(data_dir: Path, models_dir: Path) -> None:
    settings = settings_for(data_dir, models_dir, max_predict_gflop=0.02, max_adapt_gflop=0.3)
    with TestClient(create_app(settings)) as client:
        per_pixel = client.get("/v1/models/tiny", headers=HEADERS).json()["flop_per_pixel"]
        assert per_pixel > 100
        ok = _adapt(client, files=pair_files(1))  # 3 × (2 + 2) × 1024 px × 3 × per_pixel
        assert ok.status_code == 202, ok.text
        costly = _adapt(client, files=pair_files(1), steps="20")
        assert costly.status_code == 413 and costly.json()["code"] == "too_costly"
        assert "GFLOP" in costly.json()["detail"] and "fewer steps" in costly.json()["detail"]
        aid = wait_status(client, ok.json()["id"])["id"]
        small = 40  # 1600 px are within 0.02 GFLOP; 200×200 are not, though few bytes
        assert small * small * per_pixel < 0.02e9 < 200 * 200 * per_pixel
        flat = np.zeros((3, 200, 200), np.uint16)
        for size, raster, code in ((small, query_raster(small), 200),
                                   (200, tiff_bytes(flat), 413)):  # fmt: skip
            r = client.post(f"/v1/adaptations/{aid}/predict", headers=HEADERS,
                            files={"raster": ("q.tif", raster)})  # fmt: skip
            assert r.status_code == code, (size, r.text[:300])
        assert r.json()["code"] == "too_costly" and "split it" in r.json()["detail"]


def test_job_time_limit_fails_the_job_and_removes_its_data(
    data_dir: Path, models_dir: Path
) -> None:
    settings = settings_for(data_dir, models_dir, job_time_limit_s=0.05)
    with TestClient(create_app(settings)) as client:
        engine = client.app.state.services.engine
        real = engine.adapt

        def slow(*args, **kwargs):  # a job slower than the limit (sleep, then real layers)
            time.sleep(0.2)
            return real(*args, **kwargs)

        engine.adapt = slow
        body = wait_status(client, _adapt(client).json()["id"])
        assert body["status"] == "failed" and "time limit of 0.05 s" in body["reason"], body
        # 8: a failed job leaves none of the client's data behind
        deadline = time.monotonic() + 5
        while (data_dir / "adaptations" / body["id"]).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not (data_dir / "adaptations" / body["id"]).exists()


def test_jobs_are_claimed_fairly_across_keys(data_dir: Path, models_dir: Path) -> None:
    settings = settings_for(data_dir, models_dir, poll_s=3600, heartbeat_s=3600,
                            max_active_jobs_per_key=32)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        services = client.app.state.services
        services.runner.stop()
        a = [_adapt(client).json()["id"] for _ in range(4)]
        b = _adapt(client, headers=OTHER).json()["id"]  # the newest job, of another key
        with services.sessions() as s:  # key A already runs one job
            s.get(Adaptation, a[0]).status = JobStatus.running.value
            s.commit()
        order = [services.runner._claim() for _ in range(2)]
        assert order == [b, a[1]]  # B first although newer, then A's oldest queued


def test_prediction_slots_go_round_robin_across_keys() -> None:
    from api.limits import Slots

    slots = Slots(1, wait_s=10, max_waiting=10, max_waiting_per_key=10)
    served: list[str] = []
    release = threading.Event()

    def run(key: str) -> None:
        with slots.take("predictions", key):
            served.append(key)

    with slots.take("predictions", "A"):
        threads = []
        for key in ("A", "A", "A", "B"):  # A queues three before B's one
            t = threading.Thread(target=run, args=(key,))
            t.start()
            threads.append(t)
            while slots._waiting < len(threads):
                time.sleep(0.005)
        release.set()
    for t in threads:
        t.join(10)
    assert served[0] == "B" and served.count("A") == 3


def test_per_key_rate_limit_and_failed_auth_limit(data_dir: Path, models_dir: Path) -> None:
    settings = settings_for(data_dir, models_dir, rate_limit="5/minute",
                            auth_failure_limit="3/minute")  # fmt: skip
    with TestClient(create_app(settings)) as client:
        codes = [client.get("/v1/adaptations", headers=HEADERS).status_code for _ in range(7)]
        assert codes == [200] * 5 + [429] * 2
        r = client.get("/v1/adaptations", headers=HEADERS)
        assert r.json()["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
        assert client.get("/v1/adaptations", headers=OTHER).status_code == 200  # per key
        wrong = {"X-API-Key": "not-a-key-0123456789"}
        codes = [client.get("/v1/models", headers=wrong).status_code for _ in range(5)]
        assert codes == [401] * 3 + [429] * 2
        assert client.get("/health").status_code == 200


# ---------------------------------------------------------------------- 6 shared storage
def test_replica_with_its_own_storage_is_not_ready(
    tmp_path: Path, models_dir: Path, database_url: str | None
) -> None:
    url = database_url or f"sqlite:///{tmp_path / 'shared.db'}"
    first = settings_for(tmp_path / "a", models_dir, database_url=url)
    second = settings_for(tmp_path / "b", models_dir, database_url=url)
    with TestClient(create_app(first)) as a, TestClient(create_app(second)) as b:
        assert a.get("/ready").status_code == 200
        r = b.get("/ready")
        assert r.status_code == 503 and "shared volume" in " ".join(r.json()["problems"])
        refused = _adapt(b)
        assert refused.status_code == 503 and refused.json()["code"] == "not_ready"
        aid = _adapt(a).json()["id"]
        assert wait_status(a, aid)["status"] == "done"  # run by A, never claimed by B
        assert b.post(f"/v1/adaptations/{aid}/predict", headers=HEADERS,
                      files={"raster": ("q.tif", query_raster(32))}).status_code == 503  # fmt: skip
    assert not (tmp_path / "b" / "adaptations" / aid).exists()


# ---------------------------------------------------------------------- 7 database
def test_database_down_at_start_is_a_503_not_an_exit(tmp_path: Path, models_dir: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/nothing"
    settings = settings_for(tmp_path / "data", models_dir, database_url=url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/health").status_code == 200
        r = client.get("/ready")
        assert r.status_code == 503 and r.json()["database"] is False
        assert "database does not answer" in r.json()["problems"][0]
        r = _adapt(client)
        assert r.status_code == 503 and "Retry-After" in r.headers
        r = client.get("/v1/adaptations", headers=HEADERS)
        assert r.status_code == 503 and r.json()["code"] == "database_unavailable"


def test_postgres_claims_with_skip_locked(data_dir: Path, models_dir: Path, database_url) -> None:
    if database_url is None:
        pytest.skip("PostgreSQL only (SQLite has no row locks)")
    statements: list[str] = []
    with TestClient(create_app(settings_for(data_dir, models_dir))) as client:
        event.listen(client.app.state.services.db, "before_cursor_execute",
                     lambda *a: statements.append(a[2]))  # fmt: skip
        assert wait_status(client, _adapt(client).json()["id"])["status"] == "done"
    assert any("FOR UPDATE SKIP LOCKED" in s for s in statements)


# ---------------------------------------------------------------------- 8 deleted jobs
def test_deleted_and_failed_adaptations_leave_nothing(client, data_dir: Path) -> None:
    aid = wait_status(client, _adapt(client).json()["id"])["id"]
    assert (data_dir / "adaptations" / aid).is_dir()
    assert client.delete(f"/v1/adaptations/{aid}", headers=HEADERS).status_code == 204
    assert not (data_dir / "adaptations" / aid).exists()
    services = client.app.state.services
    services.engine._bundles.pop("tiny")  # the base model disappears before the job runs
    try:
        services.runner.stop()
        with services.sessions() as s:  # queue one directly (the route needs the model)
            s.add(Adaptation(id="7" * 32, owner=owner_of(HEADERS["X-API-Key"]), model="tiny",
                             status="queued", tiles=1, info={}, attempts=0))  # fmt: skip
            s.commit()
        services.store.save_support("7" * 32, [np.zeros((3, 32, 32), np.float32)],
                                    [np.zeros((32, 32), np.int64)])  # fmt: skip
        services.runner._stop.clear()
        services.runner.start()
        body = wait_status(client, "7" * 32)
        assert body["status"] == "failed" and "no longer served" in body["reason"]
        deadline = time.monotonic() + 5
        while (data_dir / "adaptations" / ("7" * 32)).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not (data_dir / "adaptations" / ("7" * 32)).exists()
    finally:
        services.engine.load_all()


# ---------------------------------------------------------------------- 9 bundle modes
def test_bundles_are_readable_by_other_users(client, data_dir: Path, tmp_path: Path) -> None:
    from apihelpers import make_bundle

    exported = make_bundle(tmp_path / "exported.bundle")
    assert stat.S_IMODE(os.stat(exported).st_mode) & 0o044 == 0o044
    aid = wait_status(client, _adapt(client).json()["id"])["id"]
    adapted = data_dir / "adaptations" / aid / "adapted.bundle"
    assert stat.S_IMODE(os.stat(adapted).st_mode) & 0o044 == 0o044


# ---------------------------------------------------------------------- 10 schema
def test_schema_matches_the_server(client) -> None:
    text = client.get("/openapi.json").text
    assert "synthetic-mamlpp" not in text
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/adaptations"]["post"]
    form = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    ref = form["$ref"].rsplit("/", 1)[1]
    assert spec["components"]["schemas"][ref]["properties"]["model"]["examples"] == ["tiny"]
    aid = wait_status(client, _adapt(client).json()["id"])["id"]
    r = client.options(f"/v1/adaptations/{aid}")
    assert r.status_code == 204
    assert set(r.headers["allow"].split(", ")) == {"GET", "DELETE", "OPTIONS"}
    r = client.put(f"/v1/adaptations/{aid}", headers=HEADERS)
    assert r.status_code == 405 and "DELETE" in r.headers["allow"]
    for method in sorted(r.headers["allow"].split(", "), reverse=True):  # each one is served
        if method != "OPTIONS":
            assert client.request(method, f"/v1/adaptations/{aid}", headers=HEADERS
                                  ).status_code in (200, 204)  # fmt: skip
    assert client.head("/health").status_code == 405
    assert "HEAD" not in client.options("/health").headers["allow"]
    many = [("images", (f"t{i}.tif", b"x")) for i in range(1001)]
    r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"}, files=many)
    assert r.status_code == 413 and r.json()["code"] == "too_many_files"
    for path, method in (("/v1/adaptations", "post"), ("/v1/segment", "post"),
                         ("/v1/adaptations/{adaptation_id}/predict", "post")):  # fmt: skip
        assert "413" in spec["paths"][path][method]["responses"]
