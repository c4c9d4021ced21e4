"""A real crash: SIGKILL the uvicorn process while a job runs, start it again on the same data.

The finished adaptation is still there (and predicts); the one that was running is put
back in the queue at once (its process is gone) and run again by the new process, never
left ``running`` by a dead one; with ``LANDCOVER_MAX_ATTEMPTS=1`` it is ``failed`` with a
reason instead.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from apihelpers import HEADERS, KEY_A, make_bundle, pair_files, query_raster

from api.jobs import LOST_REASON
from landcover.bench.api import free_port, start_server, stop_server

pytestmark = pytest.mark.slow


def _status(client: httpx.Client, aid: str) -> dict:
    return client.get(f"/v1/adaptations/{aid}", headers=HEADERS).json()


def test_kill_and_restart(tmp_path: Path) -> None:
    make_bundle(tmp_path / "models" / "tiny.bundle")
    data, models = tmp_path / "data", tmp_path / "models"
    env = {"LANDCOVER_POLL_S": "0.05", "LANDCOVER_MAX_STEPS": "5000"}
    port = free_port()
    proc = start_server(port, data, models, [KEY_A], env=env, log=tmp_path / "1.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            done = c.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                          files=pair_files(1)).json()["id"]  # fmt: skip
            deadline = time.monotonic() + 60
            while _status(c, done)["status"] != "done" and time.monotonic() < deadline:
                time.sleep(0.05)
            slow = c.post("/v1/adaptations", headers=HEADERS,
                          data={"model": "tiny", "steps": "5000"}, files=pair_files(4)
                          ).json()["id"]  # fmt: skip
            while _status(c, slow)["status"] != "running" and time.monotonic() < deadline:
                time.sleep(0.02)
            assert _status(c, slow)["status"] == "running"
        os.killpg(proc.pid, signal.SIGKILL)  # a crash: no shutdown hook runs
        proc.wait(10)
    finally:
        stop_server(proc)

    port = free_port()
    proc = start_server(port, data, models, [KEY_A], env=env, log=tmp_path / "2.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            deadline = time.monotonic() + 30
            while _status(c, slow)["attempts"] < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            again = _status(c, slow)
            assert again["status"] == "running" and again["attempts"] == 2, again
            assert _status(c, done)["status"] == "done"
            p = c.post(f"/v1/adaptations/{done}/predict", headers=HEADERS,
                       files={"raster": ("q.tif", query_raster(40))})  # fmt: skip
            assert p.status_code == 200 and p.content[:4] == b"II*\x00"
        os.killpg(proc.pid, signal.SIGKILL)  # a second crash, now with one attempt allowed
        proc.wait(10)
    finally:
        stop_server(proc)

    port = free_port()
    env["LANDCOVER_MAX_ATTEMPTS"] = "2"
    proc = start_server(port, data, models, [KEY_A], env=env, log=tmp_path / "3.log")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            lost = _status(c, slow)
            assert lost["status"] == "failed" and lost["reason"] == LOST_REASON.format(n=2)
            assert not (data / "adaptations" / slow).exists()  # no client data left
            assert _status(c, done)["status"] == "done"
    finally:
        stop_server(proc)
