"""Restarts and tenants: finished adaptations survive, lost jobs are run again (or fail
with a reason once out of attempts), keys are isolated."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import numpy as np
from apihelpers import HEADERS, KEY_B, pair_files, query_raster, settings_for, wait_status
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.jobs import LOST_REASON
from api.models import Adaptation, JobStatus, utcnow
from api.security import owner_of

OTHER = {"X-API-Key": KEY_B}


def _row(services, row_id: str, status: str, runner: str | None, age_s: float = 0.0,
         attempts: int = 1, support: bool = False) -> None:  # fmt: skip
    now = utcnow() - timedelta(seconds=age_s)
    if support:  # a validated support set in storage, as POST /v1/adaptations leaves it
        mask = np.tile(np.array([0, 1, 2, 0], dtype=np.int64), (32, 8))
        image = (mask[None].repeat(3, 0) * 60 + 60).astype(np.float32)
        services.store.save_support(row_id, [image], [mask])
    with services.sessions() as s:
        s.add(Adaptation(id=row_id, owner=owner_of(HEADERS["X-API-Key"]), model="tiny",
                         status=status, runner=runner, heartbeat_at=now, started_at=now,
                         tiles=1, info={}, attempts=attempts))  # fmt: skip
        s.commit()


def test_restart_keeps_done_fails_lost_resumes_queued(data_dir: Path, models_dir: Path) -> None:
    settings = settings_for(data_dir, models_dir, stale_after_s=5.0)
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                        files=pair_files(2))  # fmt: skip
        done = wait_status(client, r.json()["id"])
        assert done["status"] == "done"
        services = client.app.state.services
        services.runner.stop()
        # what a crash leaves behind: a job running in a process that is gone, one running
        # on another host whose heartbeat went stale, one still running elsewhere, and a
        # queued job whose support set is on disk
        # (the first two out of attempts: they fail; the next two are run again)
        host = socket.gethostname()
        _row(services, "1" * 32, JobStatus.running.value, f"{host}:999999999:dead", attempts=3,
             support=True)  # fmt: skip
        _row(services, "2" * 32, JobStatus.running.value, "otherhost:12:abcd", age_s=60,
             attempts=3, support=True)  # fmt: skip
        _row(services, "3" * 32, JobStatus.running.value, "otherhost:13:abcd", age_s=0)
        _row(services, "5" * 32, JobStatus.running.value, f"{host}:999999999:dead", support=True)
        _row(services, "6" * 32, JobStatus.running.value, "otherhost:12:abcd", age_s=60,
             support=True)  # fmt: skip
        r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                        files=pair_files(1))  # fmt: skip
        queued = r.json()["id"]
        assert r.json()["status"] == "queued"

    with TestClient(create_app(settings)) as client:  # the restart
        again = client.get(f"/v1/adaptations/{done['id']}", headers=HEADERS).json()
        assert again == done
        p = client.post(f"/v1/adaptations/{done['id']}/predict", headers=HEADERS,
                        files={"raster": ("q.tif", query_raster(40))})  # fmt: skip
        assert p.status_code == 200
        for lost in ("1" * 32, "2" * 32):
            body = client.get(f"/v1/adaptations/{lost}", headers=HEADERS).json()
            assert body["status"] == "failed" and body["reason"] == LOST_REASON.format(n=3)
            assert "create the adaptation again" in body["reason"]
            assert not (data_dir / "adaptations" / lost).exists()  # no client data left
        for resumed in ("5" * 32, "6" * 32):  # requeued, run again: nothing lost
            body = wait_status(client, resumed)
            assert body["status"] == "done" and body["attempts"] == 2, body
        alive = client.get(f"/v1/adaptations/{'3' * 32}", headers=HEADERS).json()
        assert alive["status"] == "running"  # its heartbeat is fresh: maybe another replica
        assert wait_status(client, queued)["status"] == "done"


def test_stale_heartbeat_is_reaped_while_serving(data_dir: Path, models_dir: Path) -> None:
    settings = settings_for(data_dir, models_dir, stale_after_s=0.5)
    with TestClient(create_app(settings)) as client:
        _row(client.app.state.services, "4" * 32, JobStatus.running.value, "otherhost:1:x",
             attempts=3)  # fmt: skip
        body = wait_status(client, "4" * 32, timeout=10)
        assert body["status"] == "failed" and body["reason"] == LOST_REASON.format(n=3)


def test_keys_are_isolated(client: TestClient) -> None:
    r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                    files=pair_files(1))  # fmt: skip
    aid = wait_status(client, r.json()["id"])["id"]
    assert client.get(f"/v1/adaptations/{aid}", headers=OTHER).status_code == 404
    p = client.post(f"/v1/adaptations/{aid}/predict", headers=OTHER,
                    files={"raster": ("q.tif", query_raster(32))})  # fmt: skip
    assert p.status_code == 404
    assert client.delete(f"/v1/adaptations/{aid}", headers=OTHER).status_code == 404
    assert client.get("/v1/adaptations", headers=OTHER).json()["items"] == []
    # the owner still has it, untouched
    assert client.get(f"/v1/adaptations/{aid}", headers=HEADERS).json()["status"] == "done"
    # the database stores no key, only its hash
    with client.app.state.services.sessions() as s:
        owners = {row.owner for row in s.query(Adaptation)}
    assert owners == {owner_of(HEADERS["X-API-Key"])}
    with client.app.state.services.sessions() as s:
        text = " ".join(str(v) for row in s.execute(select(Adaptation.__table__)) for v in row)
    assert HEADERS["X-API-Key"] not in text
    db_file = client.app.state.settings.data_dir / "landcover.db"
    if db_file.exists():  # SQLite: not even in the file's free pages
        assert HEADERS["X-API-Key"] not in db_file.read_bytes().decode("latin-1")


def test_delete_while_running_discards_the_result(data_dir: Path, models_dir: Path) -> None:
    with TestClient(create_app(settings_for(data_dir, models_dir))) as client:
        r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                        files=pair_files(1))  # fmt: skip
        aid = r.json()["id"]
        assert client.delete(f"/v1/adaptations/{aid}", headers=HEADERS).status_code == 204
        assert client.get(f"/v1/adaptations/{aid}", headers=HEADERS).status_code == 404
        runner = client.app.state.services.runner
        import time

        deadline = time.monotonic() + 10
        while runner.busy and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not (data_dir / "adaptations" / aid).exists()


def test_lost_or_corrupt_weights_and_bad_base_bundle(
    data_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models2"
    models.mkdir()
    (models / "tiny.bundle").write_bytes((models_dir / "tiny.bundle").read_bytes())
    (models / "broken.bundle").write_bytes(b"\x80\x04pickle")  # refused, never unpickled
    with TestClient(create_app(settings_for(data_dir, models))) as client:
        ready = client.get("/ready").json()
        assert ready["status"] == "ready" and ready["models"] == ["tiny"]
        assert any("broken.bundle" in p and "never unpickles" in p for p in ready["problems"])
        r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                        files=pair_files(1))  # fmt: skip
        aid = wait_status(client, r.json()["id"])["id"]
        store = client.app.state.services.store
        store.bundle_path(aid).write_bytes(b"garbage")
        client.app.state.services.engine.forget(aid)
        p = client.post(f"/v1/adaptations/{aid}/predict", headers=HEADERS,
                        files={"raster": ("q.tif", query_raster(32))})  # fmt: skip
        assert p.status_code == 410 and "create the adaptation again" in p.json()["detail"]
        store.bundle_path(aid).unlink()
        p = client.post(f"/v1/adaptations/{aid}/predict", headers=HEADERS,
                        files={"raster": ("q.tif", query_raster(32))})  # fmt: skip
        assert p.status_code == 410 and p.json()["code"] == "weights_missing"
