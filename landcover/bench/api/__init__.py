"""``landcover bench api``: latency and throughput of the REST service on a real uvicorn.

The bench starts ``landcover serve`` in a subprocess bound to 127.0.0.1 (loopback only) on
a free port, with a fresh storage folder and one base bundle: a real, untrained small U-Net
(the CPU architecture of the demo) with a MAML++ learner (Antoniou et al. 2019, "How to
train your MAML"), 4 bands, 128 px tiles, 5 inner steps. It measures

* adapt: ``POST /v1/adaptations`` with 5 labeled tiles of 128 px, then polling until the
  job is ``done`` (end-to-end latency, p50/p95 over ``--rounds``; the server-side time
  of the adaptation itself is reported too);
* predict: ``POST /v1/adaptations/{id}/predict`` of a 1024×1024 4-band GeoTIFF, the GeoTIFF
  map streamed back (p50/p95 over ``--rounds``);
* throughput: predict requests per second with 8 concurrent clients;
* sweep: 1, 8, 32, 64 concurrent clients of predicts and status polls over 4 API keys,
  with p50/p95 latency, 429 and 5xx counts and the slowest ``/ready`` per level
  (:mod:`landcover.bench.api.sweep`).

It prints tables and writes JSON (``--json``) with a PNG of the sweep beside it. The
server is always terminated.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from landcover.bench.api.sweep import (
    adapt_for,
    sweep_level,
    sweep_plot,
    sweep_table,
    wait_for_adaptation,
)

BENCH_NAME = "api"
BENCH_HELP = "REST service on a real uvicorn (loopback): adapt/predict latency, predict req/s"
KEY = "bench-key-0123456789abcdef"
#: Tenants of the sweep (the first is ``KEY``).
SWEEP_KEYS = [KEY] + [f"bench-key-{i}-0123456789abcdef" for i in range(1, 4)]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    port: int,
    data_dir: Path,
    models_dir: Path,
    keys: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    workers: int = 1,
    timeout: float = 120.0,
) -> subprocess.Popen[bytes]:
    """Start ``landcover serve`` on 127.0.0.1:``port`` and wait until ``/health`` answers.

    Raises:
        RuntimeError: The server exited or did not answer within ``timeout`` (its log is
            quoted); the process is stopped first.
    """
    import httpx

    cmd = [
        sys.executable, "-m", "landcover.cli", "serve", "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--data-dir", str(data_dir),
        "--models-dir", str(models_dir), "--api-keys", ",".join(keys), "--log-level", "warning",
    ]  # fmt: skip
    full_env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    full_env.update(env or {})
    log = log or Path(tempfile.mkstemp(prefix="landcover-serve-", suffix=".log")[1])
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError(
        f"landcover serve did not come up on port {port} (exit {proc.returncode}); log:\n"
        + log.read_text(errors="replace")[-3000:]
    )


def stop_server(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """Stop a server started by :func:`start_server` (SIGTERM, then SIGKILL its group)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _tiff(array: np.ndarray, nodata: float | None = None) -> bytes:
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    with rasterio.io.MemoryFile() as mem:
        with mem.open(driver="GTiff", width=array.shape[2], height=array.shape[1],
                      count=array.shape[0], dtype=str(array.dtype), nodata=nodata,
                      crs=CRS.from_epsg(32633), transform=from_origin(400000, 5000000, 10, 10),
                      tiled=True, blockxsize=256, blockysize=256) as dst:  # fmt: skip
            dst.write(array)
        return mem.read()


def _png(mask: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def make_base_bundle(path: Path, *, bands: int = 4, classes: int = 4, tile: int = 128) -> Path:
    """The bench's base model: untrained small U-Net + MAML++, saved as a real bundle."""
    import torch

    from landcover.geo.classes import ClassScheme
    from landcover.inference.bundle import ModelBundle
    from landcover.meta.registry import build_learner
    from landcover.models import build_model

    torch.manual_seed(0)
    model = build_model("small_unet", bands, classes)
    learner = build_learner("mamlpp", model, torch.nn.CrossEntropyLoss(ignore_index=255),
                            inner_lr=0.05, steps=5)  # fmt: skip
    scheme = ClassScheme(names=tuple(f"class{i}" for i in range(classes)),
                         values=tuple(range(1, classes + 1)))  # fmt: skip
    bundle = ModelBundle.from_learner(
        learner, bands=[f"B{i + 1}" for i in range(bands)], mean=[1000.0] * bands,
        std=[500.0] * bands, classes=scheme, tile_size=tile, inner_steps=5,
    )  # fmt: skip
    return bundle.save(path)


def support_files(n: int, size: int, bands: int, scheme: Any, seed: int = 0) -> list[Any]:
    """``n`` labeled tiles (image GeoTIFF + PNG mask in ``scheme``'s coding) as form fields."""
    rng = np.random.default_rng(seed)
    files: list[Any] = []
    for i in range(n):
        index = rng.integers(0, scheme.num_classes, size=(size, size))
        image = index[None] * 400 + 500 + rng.integers(0, 300, size=(bands, size, size))
        if scheme.values is not None:
            mask = np.asarray(scheme.values)[index]
        else:
            mask = np.asarray(scheme.colors, dtype=np.uint8)[index]
        files.append(("images", (f"tile{i}.tif", _tiff(image.astype(np.uint16)))))
        files.append(("masks", (f"tile{i}.png", _png(mask))))
    return files


def describe_model(bundle: Any, path: Path | None) -> str:
    """One line naming the served model."""
    origin = path.name if path is not None else "untrained"
    return (
        f"{bundle.model['arch']} + {bundle.learner['name']} ({origin}, {len(bundle.bands)} "
        f"bands, {len(bundle.class_names)} classes, {bundle.inner_steps} steps)"
    )


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _adapt_once(client: Any, files: list[Any]) -> tuple[float, float, str]:
    start = time.perf_counter()
    r = client.post("/v1/adaptations", headers={"X-API-Key": KEY}, data={"model": "base"},
                    files=files)  # fmt: skip
    r.raise_for_status()
    aid = r.json()["id"]
    # 25 polls/s: under the service's default rate limit of 30/s per key
    body = wait_for_adaptation(client, aid, {"X-API-Key": KEY}, interval=0.04)
    return time.perf_counter() - start, float(body["timings"]["adapt_s"]), aid


def _predict_once(client: Any, aid: str, raster: bytes) -> float:
    start = time.perf_counter()
    r = client.post(f"/v1/adaptations/{aid}/predict", headers={"X-API-Key": KEY},
                    files={"raster": ("q.tif", raster)})  # fmt: skip
    r.raise_for_status()
    if r.content[:4] not in (b"II*\x00", b"MM\x00*"):
        raise RuntimeError("predict did not return a GeoTIFF")
    return time.perf_counter() - start


def results_table(results: dict[str, Any]) -> Any:
    """The rich table of a results dict (as written to JSON)."""
    from rich.table import Table

    a, p, t = results["adapt"], results["predict"], results["throughput"]
    setup = results["setup"]
    table = Table(
        title="landcover bench api (uvicorn on 127.0.0.1)",
        caption=f"{setup['model']}; {setup['uvicorn_workers']} uvicorn worker(s), "
        f"{setup['predict_concurrency']} prediction slot(s), {setup['cpus']} CPUs, "
        f"OMP_NUM_THREADS={setup['omp_threads']}",
    )
    for col in ("measure", "p50", "p95", "rate"):
        table.add_column(col, justify="right" if col != "measure" else "left")
    table.add_row(
        f"adapt, {a['tiles']} tiles of {a['tile_px']} px (submit→done)",
        f"{a['p50_s']:.3f} s",
        f"{a['p95_s']:.3f} s",
        f"inner loop p50 {a['server_adapt_p50_s']:.3f} s",
    )
    side = p["raster_px"]
    table.add_row(
        f"predict {side}×{side} GeoTIFF",
        f"{p['p50_s']:.3f} s",
        f"{p['p95_s']:.3f} s",
        f"{p['megapixels_per_s']:.2f} Mpx/s",
    )
    table.add_row(
        f"predict, {t['clients']} concurrent clients",
        "",
        "",
        f"{t['requests_per_s']:.2f} req/s ({t['requests']} in {t['wall_s']:.1f} s)",
    )
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``landcover bench api``."""
    parser.add_argument("--rounds", type=int, default=10, help="latency samples per endpoint")
    parser.add_argument("--clients", type=int, default=8, help="concurrent predict clients")
    parser.add_argument("--requests", type=int, default=16, help="predicts in the rps run")
    parser.add_argument("--raster", type=int, default=1024, help="predict raster side (px)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    parser.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="base bundle to serve (default: an untrained small U-Net + MAML++, 4 bands)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny run for smoke tests")
    parser.add_argument(
        "--sweep",
        default="1,8,32,64",
        help="client counts of the concurrency sweep (comma-separated; '' to skip)",
    )
    parser.add_argument("--sweep-seconds", type=float, default=20.0, help="seconds per level")
    parser.add_argument("--sweep-raster", type=int, default=256, help="sweep raster side (px)")


def run(args: argparse.Namespace) -> int:
    """Run the bench; prints a table and writes JSON."""
    import httpx
    from rich.console import Console
    from tqdm import tqdm

    rounds, clients, requests, side = args.rounds, args.clients, args.requests, args.raster
    levels = [int(c) for c in str(args.sweep).split(",") if c.strip()]
    sweep_s, sweep_side = args.sweep_seconds, args.sweep_raster
    if args.quick:
        rounds, requests, side = 1, 2, 128
        levels, sweep_s, sweep_side = [1, 4], 2.0, 64
    from landcover.inference.bundle import ModelBundle

    tile = 128
    with tempfile.TemporaryDirectory(prefix="landcover-bench-api-") as tmp:
        root = Path(tmp)
        base = root / "models" / "base.bundle"
        if args.bundle is not None:
            base.parent.mkdir(parents=True)
            base.write_bytes(args.bundle.read_bytes())
        else:
            make_base_bundle(base, bands=4, classes=4, tile=tile)
        bundle = ModelBundle.load(base)
        bands, model_name = len(bundle.bands), describe_model(bundle, args.bundle)
        files = support_files(5, tile, bands, bundle.scheme())
        rng = np.random.default_rng(1)
        raster = _tiff(rng.integers(0, 2000, size=(bands, side, side)).astype(np.uint16))
        env = {"LANDCOVER_PREDICT_CONCURRENCY": str(max(1, min(clients, os.cpu_count() or 1))),
               "LANDCOVER_POLL_S": "0.05", "LANDCOVER_PREDICT_WAIT_S": "600"}  # fmt: skip
        port = free_port()
        proc = start_server(port, root / "data", root / "models", SWEEP_KEYS, env=env,
                            log=root / "server.log", workers=args.workers)  # fmt: skip
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
                _adapt_once(client, files)  # warm-up (imports, first model build)
                adapt, server_adapt, aid = [], [], ""
                for _ in tqdm(range(rounds), desc="adapt", unit="req"):
                    total, inner, aid = _adapt_once(client, files)
                    adapt.append(total)
                    server_adapt.append(inner)
                _predict_once(client, aid, raster)  # warm-up (predictor cache)
                predict = [
                    _predict_once(client, aid, raster)
                    for _ in tqdm(range(rounds), desc="predict", unit="req")
                ]

            def worker(n: int) -> int:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as c:
                    for _ in range(n):
                        _predict_once(c, aid, raster)
                return n

            shares = [requests // clients + (i < requests % clients) for i in range(clients)]
            start = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                done = sum(pool.map(worker, shares))
            wall = time.perf_counter() - start
            rng = np.random.default_rng(2)
            small = _tiff(rng.integers(0, 2000, size=(bands, sweep_side, sweep_side)
                                       ).astype(np.uint16))  # fmt: skip
            base_url = f"http://127.0.0.1:{port}"
            keys = SWEEP_KEYS[:2] if args.quick else SWEEP_KEYS
            targets = [(KEY, aid)] + [adapt_for(base_url, k, files) for k in keys[1:]]
            rows = [sweep_level(base_url, n, sweep_s, targets, small)
                    for n in tqdm(levels, desc="sweep", unit="level")]  # fmt: skip
        finally:
            stop_server(proc)
    results = {
        "adapt": {"tiles": 5, "tile_px": tile, "rounds": rounds,
                  "p50_s": _pct(adapt, 50), "p95_s": _pct(adapt, 95),
                  "server_adapt_p50_s": _pct(server_adapt, 50)},
        "predict": {"raster_px": side, "rounds": rounds, "p50_s": _pct(predict, 50),
                    "p95_s": _pct(predict, 95),
                    "megapixels_per_s": side * side / 1e6 / statistics.median(predict)},
        "throughput": {"clients": clients, "requests": done, "wall_s": wall,
                       "requests_per_s": done / wall},
        "setup": {"model": model_name,
                  "uvicorn_workers": args.workers,
                  "predict_concurrency": int(env["LANDCOVER_PREDICT_CONCURRENCY"]),
                  "cpus": os.cpu_count(), "omp_threads": os.environ.get("OMP_NUM_THREADS", "1")},
        "sweep": {"levels": rows, "seconds_per_level": sweep_s, "raster_px": sweep_side,
                  "api_keys": len(targets), "server_defaults": "predict_wait_s 600, "
                  "rate_limit 30/second;1200/minute per key",
                  "server_errors": sum(r["predict"]["http_5xx"] + r["poll"]["http_5xx"]
                                       for r in rows),
                  "ready_max_s": max((r["ready_max_s"] for r in rows), default=float("nan"))},
    }  # fmt: skip
    Console().print(results_table(results))
    setup = (f"{model_name}; {len(targets)} API keys, {sweep_side}² rasters, "
             f"{sweep_s:g} s per level, loopback")  # fmt: skip
    if rows:
        Console().print(sweep_table(rows, setup))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp_json = args.json.with_name(args.json.name + ".tmp")
        tmp_json.write_text(json.dumps(results, indent=2))
        os.replace(tmp_json, args.json)
        if rows:
            sweep_plot(rows, args.json.with_name(args.json.stem + "_sweep.png"))
    return 0
