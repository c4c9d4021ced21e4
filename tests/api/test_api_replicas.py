"""Two replicas for real: two ``landcover serve`` processes on one PostgreSQL and one store;
and a server started before its database exists, which waits for it instead of exiting.

Adaptations are created on replica A and predicted on replica B; A is killed (SIGKILL)
while it runs a job, and B finishes every job, the interrupted one included: nothing is
lost. Needs the PostgreSQL server binaries (see ``conftest.py``).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from apihelpers import HEADERS, KEY_A, KEY_B, make_bundle, pair_files, query_raster
from pgcluster import Cluster
from sqlalchemy import create_engine, text

from landcover.bench.api import free_port, start_server, stop_server

pytestmark = pytest.mark.slow

ENV = {
    "LANDCOVER_JOB_WORKERS": "1",
    "LANDCOVER_POLL_S": "0.1",
    "LANDCOVER_HEARTBEAT_S": "0.3",
    "LANDCOVER_STALE_AFTER_S": "3",
    "LANDCOVER_MAX_ACTIVE_JOBS_PER_KEY": "32",
    "LANDCOVER_RATE_LIMIT": "1000/second",
}


def _wait_all(client: httpx.Client, ids: list[str], timeout: float = 240) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bodies = [client.get(f"/v1/adaptations/{a}", headers=HEADERS).json() for a in ids]
        if all(b["status"] in ("done", "failed") for b in bodies):
            return bodies
        time.sleep(0.2)
    raise AssertionError(f"not finished: {[b['status'] for b in bodies]}")


def test_two_replicas_share_work_and_survive_a_kill(postgres: Cluster, tmp_path: Path) -> None:
    url = postgres.new_database()
    make_bundle(tmp_path / "models" / "tiny.bundle")
    env = {**ENV, "LANDCOVER_DATABASE_URL": url}
    data = tmp_path / "shared-data"  # the one storage folder both replicas mount
    ports = free_port(), free_port()
    a = start_server(ports[0], data, tmp_path / "models", [KEY_A, KEY_B], env=env,
                     log=tmp_path / "a.log")  # fmt: skip
    b = None
    try:
        b = start_server(ports[1], data, tmp_path / "models", [KEY_A, KEY_B], env=env,
                         log=tmp_path / "b.log")  # fmt: skip
        ca = httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}", timeout=60)
        cb = httpx.Client(base_url=f"http://127.0.0.1:{ports[1]}", timeout=60)
        assert ca.get("/ready").status_code == cb.get("/ready").status_code == 200
        ids = []
        for i in range(6):  # long enough jobs (100 steps) that one is running at the kill
            r = ca.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny",
                        "steps": "100"}, files=pair_files(1 + i % 3))  # fmt: skip
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        db = create_engine(url)
        deadline = time.monotonic() + 60
        running_on_a = None
        while running_on_a is None and time.monotonic() < deadline:
            with db.connect() as conn:
                running_on_a = conn.execute(
                    text("SELECT id FROM adaptations WHERE status='running' AND runner LIKE :r"),
                    {"r": f"%:{a.pid}:%"},
                ).scalar()
            time.sleep(0.02)
        assert running_on_a is not None, "replica A never ran a job"
        os.killpg(a.pid, signal.SIGKILL)  # mid-job
        a.wait(10)
        bodies = _wait_all(cb, ids)
        assert [x["status"] for x in bodies] == ["done"] * 6, bodies
        assert {x["id"]: x["attempts"] for x in bodies}[running_on_a] == 2
        with db.connect() as conn:
            runners = {
                r.split(":")[1] for (r,) in conn.execute(text("SELECT runner FROM adaptations"))
            }
        assert str(b.pid) in runners  # B took over work
        for aid in ids:  # created on A, predicted on B
            p = cb.post(f"/v1/adaptations/{aid}/predict", headers=HEADERS,
                        files={"raster": ("q.tif", query_raster(48))})  # fmt: skip
            assert p.status_code == 200 and p.content[:4] == b"II*\x00", p.text[:300]
        # done jobs keep only their adapted bundle in the shared storage
        for aid in ids:
            assert sorted(p.name for p in (data / "adaptations" / aid).iterdir()) == [
                "adapted.bundle"
            ]
        db.dispose()
    finally:
        stop_server(a)
        if b is not None:
            stop_server(b)
        postgres.drop_database(url)


def test_server_started_before_its_database_waits_for_it(postgres: Cluster, tmp_path: Path) -> None:
    import psycopg

    make_bundle(tmp_path / "models" / "tiny.bundle")
    name = f"late_{os.getpid()}"
    url = postgres.url(name)  # does not exist yet: connections fail as if it were down
    port = free_port()
    env = {**ENV, "LANDCOVER_DATABASE_URL": url}
    proc = start_server(port, tmp_path / "data", tmp_path / "models", [KEY_A], env=env,
                        log=tmp_path / "s.log")  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            r = c.get("/ready")
            assert r.status_code == 503 and r.json()["database"] is False
            r = c.get("/v1/adaptations", headers=HEADERS)
            assert r.status_code == 503 and "Retry-After" in r.headers
            assert proc.poll() is None  # still serving
            with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres "
                                 "dbname=postgres", autocommit=True) as conn:  # fmt: skip
                conn.execute(f'CREATE DATABASE "{name}"')
            assert c.get("/ready").status_code == 200  # tables made once it answers
            r = c.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                       files=pair_files(1))  # fmt: skip
            assert r.status_code == 202, r.text
            deadline = time.monotonic() + 60
            while c.get(f"/v1/adaptations/{r.json()['id']}",
                        headers=HEADERS).json()["status"] != "done":  # fmt: skip
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        stop_server(proc)
        postgres.drop_database(url)
