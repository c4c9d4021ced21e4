"""``landcover bench batch``: ``landcover batch`` on 1 and 2 single-threaded Dask workers.

Two cases, each on synthetic 4-band uint16 GeoTIFFs and the bench model of ``landcover
bench predict`` (small U-Net, MAML++, 5 classes):

- *many*: ``--scenes`` scenes of ``--size``² pixels (default 8 of 4096²);
- *one big*: one scene of ``--big``² pixels (default 16384²), cut into blocks of
  ``--block-pixels`` that map on different workers and are assembled into one COG.

For each case: the per-scene ``landcover predict`` times (in this process, one torch
thread, COG output: the serial reference), then ``landcover batch`` on a local cluster of 1
and of 2 worker processes of one thread each (wall time of the run; the cluster's start-up
and the workers' imports excluded). Reported: speed-up (1-worker wall / 2-worker wall,
target >= 1.8), the 2-worker wall over half the serial sum (target <= 1.15), pixels per
second per core, the CPU seconds of the workers against those of the serial predictions
(the work batch adds, whatever else the machine runs), and whether every output is
identical to ``landcover predict``'s (pixels, georeferencing, colours). With 2 workers and
at least 2 scenes, a *ceiling* row runs two plain ``landcover predict`` processes at once
(every other scene each, no Dask): the speed-up two cores give any scheduler on this
machine, so that the batch's shortfall from 2x splits into the machine's and its own.
Timings are only meaningful on an otherwise idle machine with at least 2 free cores.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_NAME = "batch"
BENCH_HELP = "landcover batch on 1 vs 2 Dask workers: speed-up, overhead vs predict, identity"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the bench."""
    parser.add_argument("--scenes", type=int, default=8, help="scenes of the 'many' case")
    parser.add_argument("--size", type=int, default=4096, help="side of those scenes (px)")
    parser.add_argument(
        "--big", type=int, default=16384, help="side of the one big scene (px; 0 skips it)"
    )
    parser.add_argument(
        "--block-pixels",
        type=int,
        default=4096 * 4096,
        help="pixels per block of the big scene (default 4096²)",
    )
    parser.add_argument("--workers", default="1,2", help="worker counts to run (default 1,2)")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: 4 scenes of 1024², big 2048²"
    )
    parser.add_argument("--keep", default=None, metavar="DIR", help="keep the files in DIR")
    parser.add_argument("--json", default=None, metavar="FILE", help="write results as JSON")


def _check(args: argparse.Namespace) -> list[int]:
    if args.quick:
        args.scenes, args.size, args.big = 4, 1024, 2048
        args.block_pixels = min(args.block_pixels, 1024 * 1024)
    if args.scenes < 1 or args.size < 64:
        raise ValueError("--scenes must be >= 1 and --size >= 64")
    if args.big and args.big < 64:
        raise ValueError("--big must be 0 (skip) or >= 64")
    if args.block_pixels < 65536:
        raise ValueError("--block-pixels must be at least 65536")
    try:
        workers = sorted({int(w) for w in args.workers.split(",")})
    except ValueError:
        msg = f"--workers must be numbers separated by commas; got {args.workers!r}"
        raise ValueError(msg) from None
    if not workers or workers[0] < 1:
        raise ValueError("--workers must be at least 1")
    return workers


def _reference(bundle: Path, scenes: list[Path], out: Path) -> tuple[list[float], float]:
    """Map each scene with ``landcover predict`` (1 thread, COG).

    Returns:
        The scenes' wall times and the CPU seconds of them all (every thread).
    """
    from landcover.inference import predict_cli

    times = []
    cpu = time.process_time()
    for s in scenes:
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # its "wrote ..." lines
            code = predict_cli.main([str(bundle), str(s), str(out / f"{s.stem}.tif"), "--cog",
                                     "--threads", "1", "--quiet"])  # fmt: skip
        times.append(time.perf_counter() - start)
        if code != 0:
            raise RuntimeError(f"landcover predict failed on {s}")
    return times, time.process_time() - cpu


def _stream(bundle: str, scenes: list[str], out: str) -> tuple[list[float], float]:
    """One process's share of :func:`_parallel_reference` (run in a spawned process)."""
    import torch

    torch.set_num_threads(1)
    times, cpu = _reference(Path(bundle), [Path(s) for s in scenes], Path(out))
    return times, cpu


def _warm(seconds: float) -> int:
    """Import the predict path in a pool process (and hold it so the other one gets work)."""
    import os

    from landcover.inference import predict_cli  # noqa: F401

    time.sleep(seconds)
    return os.getpid()


def _parallel_reference(bundle: Path, scenes: list[Path], out: Path,
                        processes: int) -> tuple[float, float]:  # fmt: skip
    """The machine's ceiling: ``processes`` plain ``landcover predict`` streams at once.

    Each process maps every ``processes``-th scene, one after the other (no Dask, no
    blocks); the processes are started and have imported the predict path before the
    clock starts. Returns the wall time until the last stream ends and the CPU seconds
    of the streams.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    shares = [[str(s) for s in scenes[i::processes]] for i in range(processes)]
    with ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn")) as pool:
        pids = set(pool.map(_warm, [1.0] * processes))
        if len(pids) != processes:
            raise RuntimeError(f"the warm-up reached {len(pids)} of {processes} processes")
        start = time.perf_counter()
        results = list(pool.map(_stream, [str(bundle)] * processes, shares,
                                [str(out)] * processes))  # fmt: skip
        wall = time.perf_counter() - start
    return wall, sum(cpu for _, cpu in results)


def _cpu_seconds() -> float:
    """CPU seconds (user + system, every thread) of this process (run on each worker)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _identical(a: Path, b: Path) -> bool:
    import numpy as np
    import rasterio

    with rasterio.open(a) as x, rasterio.open(b) as y:
        return bool(
            x.profile == y.profile
            and x.colormap(1) == y.colormap(1)
            and np.array_equal(x.read(), y.read())
        )


def _run_batch(manifest: Path, workers: int) -> dict[str, Any]:
    from distributed import Client

    from landcover.batch.engine import local_cluster, run_batch, warm_up
    from landcover.batch.manifest import load_manifest

    with local_cluster(workers, 1) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        warm_up(client)
        before = client.run(_cpu_seconds)
        start = time.perf_counter()
        report = run_batch(load_manifest(manifest), client, progress=False)
        report["bench_wall"] = time.perf_counter() - start
        after = client.run(_cpu_seconds)
        report["bench_cpu"] = sum(after[w] - before[w] for w in after)
    if not report["ok"]:
        raise RuntimeError(f"landcover batch failed: {report['failures']}")
    return report


def _case(name: str, root: Path, bundle: Path, scenes: list[Path], workers: list[int],
          block_pixels: int) -> list[dict[str, Any]]:  # fmt: skip
    ref_dir = root / name / "predict"
    ref_dir.mkdir(parents=True)
    serial, serial_cpu = _reference(bundle, scenes, ref_dir)
    pixels = 0
    for s in scenes:
        import rasterio

        with rasterio.open(s) as ds:
            pixels += ds.width * ds.height
    rows = [{"case": name, "run": "landcover predict, serial", "workers": 1,
             "wall_s": sum(serial), "per_scene_s": serial, "pixels": pixels,
             "px_per_s_per_core": pixels / sum(serial), "cpu_s": serial_cpu}]  # fmt: skip
    if len(scenes) >= 2 and max(workers) >= 2:  # what two cores give any scheduler
        par_dir = root / name / "predict2"
        par_dir.mkdir()
        wall, cpu = _parallel_reference(bundle, scenes, par_dir, 2)
        same = all(_identical(par_dir / f"{s.stem}.tif", ref_dir / f"{s.stem}.tif")
                   for s in scenes)  # fmt: skip
        rows.append({"case": name, "run": "landcover predict, 2 processes at once (ceiling)",
                     "workers": 2, "wall_s": wall, "pixels": pixels,
                     "px_per_s_per_core": pixels / wall / 2, "identical": same,
                     "speedup_vs_serial": sum(serial) / wall,
                     "vs_half_serial": wall / (sum(serial) / 2), "cpu_s": cpu,
                     "cpu_vs_serial": cpu / serial_cpu})  # fmt: skip
    walls: dict[int, float] = {}
    for w in workers:
        out = root / name / f"batch{w}"
        manifest = root / name / f"batch{w}.yaml"
        manifest.write_text(json.dumps({
            "output": str(out), "block_pixels": block_pixels, "retries": 0,
            "regions": [{"name": name, "adapted": str(bundle),
                         "scenes": [str(s) for s in scenes]}],
        }))  # fmt: skip
        report = _run_batch(manifest, w)
        walls[w] = report["bench_wall"]
        same = all(_identical(out / name / "maps" / f"{s.stem}.tif", ref_dir / f"{s.stem}.tif")
                   for s in scenes)  # fmt: skip
        blocks = sum(r.get("blocks", 1) for r in report["scenes"])
        rows.append({"case": name, "run": f"landcover batch, {w} worker(s)", "workers": w,
                     "wall_s": walls[w], "pixels": pixels, "blocks": blocks,
                     "px_per_s_per_core": pixels / walls[w] / w, "identical": same,
                     "speedup": walls[min(walls)] / walls[w],
                     "vs_half_serial": walls[w] / (sum(serial) / w),
                     "cpu_s": report["bench_cpu"],
                     "cpu_vs_serial": report["bench_cpu"] / serial_cpu})  # fmt: skip
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("| case | run | wall s | px/s/core | blocks | speed-up | wall / (serial / workers) "
            "| CPU s | CPU / serial CPU | identical |\n"
            "|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    lines = [head]
    for r in rows:
        speed = f"{r['speedup']:.2f}x" if "speedup" in r else "-"
        if "speedup_vs_serial" in r:  # the ceiling row: against the serial predictions
            speed = f"({r['speedup_vs_serial']:.2f}x serial)"
        ratio = f"{r['vs_half_serial']:.2f}" if "vs_half_serial" in r else "-"
        lines.append(f"| {r['case']} | {r['run']} | {r['wall_s']:.1f} | "
                     f"{r['px_per_s_per_core']:,.0f} | {r.get('blocks', '-')} | {speed} | "
                     f"{ratio} | {r['cpu_s']:.1f} | {r.get('cpu_vs_serial', 1.0):.2f} | "
                     f"{r.get('identical', '-')} |")  # fmt: skip
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the bench; prints the table (exit 1 when an output differs from predict's)."""
    from landcover.bench.predict import _bundle, _write_raster
    from landcover.inference.bundle import ModelBundle
    from landcover.meta.protocol import AdaptedState

    workers = _check(args)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="landcover-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        scenes = [_write_raster(root / f"scene{i}.tif", args.size, args.size, seed=i)
                  for i in range(args.scenes)]  # fmt: skip
        # The bench model of `landcover bench predict`, stored as a region's adapted bundle
        # with the meta-learned state itself (what `landcover predict` maps a meta bundle
        # with), so that it maps as `adapted:` in a manifest.
        meta = ModelBundle.load(_bundle(root / "meta.bundle", scenes[0]))
        bundle = meta.with_adapted(AdaptedState()).save(root / "model.bundle")
        rows = _case("many", root, bundle, scenes, workers, args.block_pixels)
        if args.big:
            big = _write_raster(root / "big.tif", args.big, args.big, seed=99)
            rows += _case("one-big", root, bundle, [big], workers, args.block_pixels)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(_table(rows))
    if args.json:
        from landcover.batch.records import write_json

        write_json(args.json, {"settings": {k: v for k, v in vars(args).items()
                                            if k != "func"}, "rows": rows})  # fmt: skip
    return 0 if all(r.get("identical", True) for r in rows) else 1
