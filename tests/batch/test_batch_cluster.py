"""``landcover batch`` on a real dask.distributed LocalCluster of 2 worker processes.

One worker is killed (SIGKILL) mid-run: the run still completes with every output
identical to ``landcover predict`` run serially on each scene; a rerun maps nothing; the
corrupt scene is reported while the others complete, and the exit code is non-zero.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from landcover.batch import cli
from landcover.batch.engine import run_batch
from landcover.batch.manifest import load_manifest
from tests.batch.batchhelpers import make_project, predict_reference, same_raster

pytestmark = pytest.mark.timeout(180)


def test_killed_worker_rerun_and_corrupt_scene(tmp_path: Path, capsys) -> None:
    manifest_path = make_project(tmp_path, scenes=1)
    manifest = load_manifest(manifest_path)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,  # fmt: skip
        Client(cluster) as client,
    ):
        pids = client.run(os.getpid)
        killed: dict[str, object] = {}

        def kill_one(done: int, total: int) -> None:
            if killed:
                return
            busy = [w for w, keys in client.processing().items() if keys]
            if not busy:
                return
            killed.update(worker=busy[0], done=done, total=total,
                          tasks=len(client.processing()[busy[0]]))  # fmt: skip
            os.kill(pids[busy[0]], signal.SIGKILL)

        report = run_batch(manifest, client, progress=False, on_progress=kill_one)
        assert killed, "no worker was busy: nothing was killed"
        assert killed["done"] < killed["total"] and killed["tasks"] > 0  # mid-run
        assert set(client.run(os.getpid).values()) != set(pids.values())  # one was replaced

        # every good scene mapped, the corrupt one reported, the run not ok
        status = {s["scene"]: s["status"] for s in report["scenes"]}
        assert status == {**{f"s{i}": "mapped" for i in range(1)}, "big": "mapped",
                          "bad": "failed"}  # fmt: skip
        assert not report["ok"]
        (failure,) = report["failures"]
        assert failure["scene"] == "bad" and "not a readable raster" in failure["error"]
        big = next(s for s in report["scenes"] if s["scene"] == "big")
        assert big["blocks"] > 1  # the big scene went through blocks

        # identical to `landcover predict` on each scene, serially
        adapted = tmp_path / "out" / "r1" / "adapted.bundle"
        maps = tmp_path / "out" / "r1" / "maps"
        for i in range(1):
            ref = predict_reference(adapted, tmp_path / "scenes" / f"s{i}.tif",
                                    tmp_path / "ref" / f"s{i}.tif")  # fmt: skip
            same_raster(maps / f"s{i}.tif", ref)
        ref = predict_reference(adapted, tmp_path / "big.tif", tmp_path / "ref" / "big.tif")
        same_raster(maps / "big.tif", ref)
        for sidecar in ("big.qml", "big.tif.aux.xml"):
            assert (maps / sidecar).read_bytes() == (tmp_path / "ref" / sidecar).read_bytes()
        assert not (tmp_path / "out" / "r1" / ".batch" / "work" / "big").exists()

        # rerun through the CLI on the same scheduler: nothing mapped, exit code 1
        mtimes = {p: p.stat().st_mtime_ns for p in maps.iterdir()}
        capsys.readouterr()
        code = cli.main([str(manifest_path), "--scheduler", cluster.scheduler_address,
                         "--quiet", "--json"])  # fmt: skip
        rerun = json.loads(capsys.readouterr().out)
        assert code == 1
        assert rerun["totals"] == {**rerun["totals"], "mapped": 0, "skipped": 2, "failed": 1}
        assert {p: p.stat().st_mtime_ns for p in maps.iterdir()} == mtimes
        adaptation = json.loads((tmp_path / "out" / "r1" / "adapted.json").read_text())
        assert rerun["regions"][0]["adapted"] == "reused"
        assert rerun["regions"][0]["adapted_bundle"] == str(adapted.resolve())
        assert adaptation["summary"]["report"]["steps_tried"] >= 1

    # the report files exist, in JSON and Markdown
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| r1 | bad | failed |" in md and "not a readable raster" in md


def test_local_cluster_workers_run_without_the_profiler_and_malloc_trim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The local cluster's workers skip what cost mapping CPU (docs/batch.md)."""
    import dask

    from landcover.batch.engine import PROFILE, local_cluster

    # A Dask nanny writes its pre-spawn variables into its own process's environment, so a
    # default LocalCluster started earlier in this process (another test) leaves
    # MALLOC_TRIM_THRESHOLD_ set here; a variable set in the environment is the user's choice,
    # which Dask (and landcover) keep. `landcover batch` starts one cluster per process.
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with local_cluster(workers=1) as cluster, Client(cluster) as client:
        (env,) = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()
        (profile,) = client.run(lambda: dask.config.get(PROFILE)).values()
        (threads,) = client.run(lambda: os.environ.get("OMP_NUM_THREADS")).values()
    assert env is None
    assert profile is False
    assert threads == "1"  # Dask's other worker settings are kept
    assert dask.config.get(PROFILE) is True  # this process's configuration is untouched
