"""Run a manifest as a task graph on ``dask.distributed``.

The plan, made on the client:

- per region, one *prepare* task (adapt once on the support folder, or read the adapted
  bundle) whose result, the bundle's bytes, Dask sends to each worker that needs it once;
- per scene whose outputs are not already complete and valid (:func:`~landcover.batch.
  records.scene_complete`), one *map* task, or, for a scene of more than ``block_pixels``
  pixels, one *block* task per block (:mod:`~landcover.batch.blocks`) and one *assemble*
  task, so one huge scene keeps every worker busy too.

All tasks are submitted at once: adaptations of some regions overlap with the mapping of
others, and Dask balances the tasks over the workers. A failing task is retried
(``retries``), then its scene is recorded as failed while the rest finishes; the tasks of a
worker that dies are redone elsewhere (Dask's lineage). At the end, per region: a mosaic
VRT of its maps and a STAC ItemCollection; for the run: the report (JSON + Markdown).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
from distributed import Client, Future, LocalCluster, as_completed
from tqdm import tqdm

from landcover.batch.blocks import plan_blocks
from landcover.batch.errors import ManifestError
from landcover.batch.manifest import Manifest, Region
from landcover.batch.records import file_digest, scene_complete
from landcover.batch.report import scene_row, write_report
from landcover.batch.scenes import Scene, region_dir, resolve_scenes
from landcover.batch.stac_output import write_item_collection
from landcover.batch.vrt import mosaic_vrt
from landcover.batch.worker import (
    adaptation_key,
    assemble_scene,
    map_block,
    map_scene,
    prepare_region,
    reusable_adaptation,
    scene_sources,
)

#: Dask's configuration of the environment its nanny gives worker processes.
NANNY_ENV = "distributed.nanny.pre-spawn-environ"
#: Dask's switch of its workers' statistical profiler.
PROFILE = "distributed.worker.profile.enabled"


def local_cluster(workers: int | None = None, threads: int = 1) -> LocalCluster:
    """A local Dask cluster of worker processes sized to the machine.

    Args:
        workers: Worker processes (default: the CPU cores available to this process
            divided by ``threads``).
        threads: Threads per worker (each worker maps one window at a time with this many
            torch threads).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = workers or max(1, (cores or 1) // threads)
    # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536; setting it turns off
    # glibc's dynamic mmap threshold, so every large tensor is mmap'ed and unmapped anew:
    # mapping ran 2x slower (measured). Unset here, for the workers' restarts too.
    # Dask's statistical profiler samples every worker thread's stack every 10 ms (for the
    # dashboard's profile page): on a torch convolution loop it cost a worker 10-15 % more
    # CPU than the same work in-process (measured, docs/batch.md). Off for the local
    # cluster; an existing cluster (--scheduler) keeps its own configuration.
    # Failed tasks are reported by the run report; Dask's own error logs would repeat them.
    quiet = {f"{NANNY_ENV}.MALLOC_TRIM_THRESHOLD_": None, PROFILE: False}
    with dask.config.set(quiet):
        return LocalCluster(n_workers=n, threads_per_worker=threads, processes=True,
                            dashboard_address=":0", silence_logs=logging.CRITICAL)  # fmt: skip


def warm_up(client: Client) -> None:
    """Import the mapping code (torch, the models) on every worker now.

    Part of a worker's start-up; benchmarks call it so that their timings leave it out.
    """
    client.run(importlib.import_module, "landcover.batch.worker")
    client.run(importlib.import_module, "landcover.inference.predict")


@dataclass
class _RegionPlan:
    index: int
    region: Region
    scenes: list[Scene]
    digest: str | None
    bundle: Any
    skipped: dict[str, dict[str, Any]] = field(default_factory=dict)
    model: Future | None = None
    divisor: int | None = None


def _plan_region(manifest: Manifest, index: int, region: Region) -> _RegionPlan:
    """Resolve a region's scenes and find those already complete (client side)."""
    from landcover.inference.bundle import ModelBundle
    from landcover.inference.errors import BundleError

    where = f"regions[{index}] ({region.name!r})"
    bundle_path = manifest.path(region.adapted or region.bundle)  # type: ignore[arg-type]
    try:
        bundle = ModelBundle.load(bundle_path)
    except (BundleError, OSError) as err:
        field_name = "adapted" if region.adapted else "bundle"
        raise ManifestError(f"{where}, field {field_name!r}: {err}") from None
    if region.adapted is not None and bundle.kind != "adapted":
        raise ManifestError(f"{where}, field 'adapted': {bundle_path} is a meta-learned "
                            "bundle; give it as 'bundle' with a 'support' folder")  # fmt: skip
    if region.support is not None and not manifest.path(region.support).is_dir():
        raise ManifestError(f"{where}, field 'support': {manifest.path(region.support)} is "
                            "not a folder of labelled tiles (images/, masks/)")  # fmt: skip
    scenes = resolve_scenes(manifest, region, index, list(bundle.bands))
    if region.adapted is not None:
        digest: str | None = file_digest(bundle_path)
    else:
        support = manifest.path(region.support)  # type: ignore[arg-type]
        key = adaptation_key(bundle_path, support, region.steps, region.guard)
        record = reusable_adaptation(region_dir(manifest, region) / "adapted.bundle", key)
        digest = record["adapted_sha256"] if record else None
    plan = _RegionPlan(index, region, scenes, digest, bundle)
    if digest is not None:
        options = manifest.options(region).model_dump()
        for s in scenes:
            try:
                sources = scene_sources(s)
            except OSError:
                continue
            done = scene_complete(s.record, source=sources, bundle_digest=digest,
                                  options=options)  # fmt: skip
            if done is not None:
                plan.skipped[s.id] = done
    return plan


def block_budget(block_pixels: int, pixels: int, slots: int, total: int) -> int:
    """Output pixels per block of a scene of ``pixels`` pixels.

    A scene is cut only as far as the workers need work: a scene larger than a worker
    thread's fair share of the run (``total`` pixels to map over ``slots`` worker threads)
    goes into ``ceil(pixels / share)`` blocks, and no block is smaller than
    ``block_pixels``. One scene on two workers: two blocks; eight equal scenes on two
    workers: no cut; one huge scene among small ones: cut until its blocks are a share.
    Each block also computes the windows that overlap its neighbours (its halo), so blocks
    beyond the workers' need cost time and gain nothing: four blocks of one scene on two
    workers paid 14% more CPU than two (``docs/batch.md``).
    """
    share = max(total, pixels, 1) / max(slots, 1)
    wanted = max(1, math.ceil(pixels / share - 1e-9))
    blocks = max(1, min(wanted, pixels // block_pixels))
    return -(-pixels // blocks)


def _pixels(scene: Scene) -> int:
    """A scene's pixel count (0 for one that cannot be read: its task reports why)."""
    from landcover.geo.raster import read_profile

    try:
        profile = read_profile(scene.input)
    except Exception:
        return 0
    return profile.width * profile.height


def _scene_tasks(client: Client, manifest: Manifest, plan: _RegionPlan, scene: Scene,
                 slots: int, total: int) -> tuple[Future, list[Future]]:  # fmt: skip
    """Submit a scene's tasks; returns its final future and its block futures."""
    from landcover.geo.raster import read_profile
    from landcover.inference.bundle import find_model
    from landcover.inference.predict import default_window

    opts = manifest.options(plan.region)
    retries = manifest.retries
    blocks = []
    try:
        profile = read_profile(scene.input)
        big = profile.width * profile.height > manifest.block_pixels and not opts.vectors
    except Exception:  # the worker reports the error (after its retries)
        big = False
    if big:
        window = opts.window or default_window(plan.bundle)
        overlap = window // 4 if opts.overlap is None else opts.overlap
        if plan.divisor is None:
            plan.divisor = int(find_model(plan.bundle.build_learner("cpu")).size_divisor)
        pixels = profile.width * profile.height
        budget = block_budget(manifest.block_pixels, pixels, slots, total)
        blocks = plan_blocks(profile.height, profile.width, window, overlap, plan.divisor,
                             budget)  # fmt: skip
    if len(blocks) > 1:
        parts = [client.submit(map_block, plan.model, scene, b, opts, pure=False,
                               retries=retries) for b in blocks]  # fmt: skip
        final = client.submit(assemble_scene, plan.model, scene, blocks, opts, *parts,
                              pure=False, retries=retries)  # fmt: skip
        return final, parts
    return client.submit(map_scene, plan.model, scene, opts, pure=False, retries=retries), []


def _mosaics(region_out: Path, records: list[dict[str, Any]]) -> list[str]:
    """Mosaic VRT(s) of a region's class maps: one per CRS and pixel size."""
    import rasterio

    groups: dict[tuple[Any, ...], list[str]] = {}
    for r in records:
        with rasterio.open(r["classes"]) as ds:
            key = (ds.crs.to_string() if ds.crs else None, ds.transform.a, ds.transform.e)
        groups.setdefault(key, []).append(r["classes"])
    out = []
    for i, maps in enumerate(groups.values()):
        name = "mosaic.vrt" if len(groups) == 1 else f"mosaic_{i}.vrt"
        out.append(str(mosaic_vrt(sorted(maps), region_out / name)))
    return out


def run_batch(
    manifest: Manifest,
    client: Client,
    *,
    manifest_path: str = "",
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run a manifest on a Dask client; returns the run report (also written to disk).

    Args:
        manifest: The validated manifest.
        client: A client of the cluster that runs the tasks.
        manifest_path: The manifest's path (for the report).
        progress: Show a progress bar over scenes, blocks and adaptations.
        on_progress: Called with ``(tasks finished, tasks)`` after each finished task.

    Raises:
        ManifestError: A bundle, support folder or scene of the manifest is not usable
            (checked before any task runs).
    """
    start = time.perf_counter()
    plans = [_plan_region(manifest, i, r) for i, r in enumerate(manifest.regions)]
    finals: dict[Future, tuple[_RegionPlan, Scene]] = {}
    everything: list[Future] = []
    region_models: dict[str, Future] = {}
    slots = sum(client.nthreads().values())
    todo_of = {p.region.name: [s for s in p.scenes if s.id not in p.skipped] for p in plans}
    total = sum(_pixels(s) for t in todo_of.values() for s in t)
    for plan in plans:
        todo = todo_of[plan.region.name]
        if not todo:
            continue
        name = plan.region.name
        plan.model = client.submit(prepare_region, name, pure=False, retries=manifest.retries,
                                   **_prepare_kwargs(manifest, plan.region))  # fmt: skip
        region_models[name] = plan.model
        everything.append(plan.model)
        for scene in todo:
            final, parts = _scene_tasks(client, manifest, plan, scene, slots, total)
            finals[final] = (plan, scene)
            everything += [*parts, final]

    threads = client.nthreads()  # every worker (scheduler_info lists only a few)
    bar = tqdm(total=len(everything), desc="batch", unit="task", disable=not progress)
    for done, _ in enumerate(as_completed(everything), start=1):
        bar.update(1)
        if on_progress is not None:
            on_progress(done, len(everything))
    bar.close()

    rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    regions: list[dict[str, Any]] = []
    outcome: dict[tuple[str, str], tuple[str, Any]] = {}
    for fut, (plan, scene) in finals.items():
        if fut.status == "finished":
            outcome[(plan.region.name, scene.id)] = ("mapped", fut.result())
        elif fut.status == "error":
            err = fut.exception()
            text = str(err.args[0]) if err is not None and err.args else repr(err)
            outcome[(plan.region.name, scene.id)] = ("failed", text)
        else:  # cancelled or lost with the scheduler
            outcome[(plan.region.name, scene.id)] = ("failed", f"task {fut.status}")
    for plan in plans:
        name = plan.region.name
        model = region_models.get(name)
        prov: dict[str, Any] = {}
        if model is not None and model.status == "finished":
            prov = dict(model.result().provenance)
        elif model is None:  # nothing to map: the model's record, read here
            prov = prepare_region(name, **_prepare_kwargs(manifest, plan.region)).provenance
        complete = []
        counts = {"mapped": 0, "skipped": 0, "failed": 0}
        for scene in plan.scenes:
            if scene.id in plan.skipped:
                status, value = "skipped", plan.skipped[scene.id]
            else:
                status, value = outcome[(name, scene.id)]
            counts[status] += 1
            if status == "failed":
                rows.append(scene_row(name, scene.id, status, error=value))
                failures.append({"region": name, "scene": scene.id, "error": value})
            else:
                rows.append(scene_row(name, scene.id, status, value))
                complete.append(value)
        root = region_dir(manifest, plan.region)
        entry = {"name": name, **counts, **prov, "mosaics": [], "stac": None}
        if complete:
            entry["mosaics"] = _mosaics(root, complete)
            entry["stac"] = str(write_item_collection(complete, prov, root / "items.json"))
        regions.append(entry)
    mapped = [r for r in rows if r["status"] == "mapped"]
    wall = time.perf_counter() - start
    pixels = sum(r["pixels"] for r in mapped)
    report = {
        "manifest": manifest_path,
        "scheduler": client.scheduler.address if client.scheduler else "?",
        "dashboard": client.dashboard_link if _has_dashboard(client) else None,
        "workers": len(threads),
        "threads": sum(threads.values()),
        "wall_seconds": wall,
        "ok": not failures,
        "totals": {
            "mapped": len(mapped),
            "skipped": sum(r["status"] == "skipped" for r in rows),
            "failed": len(failures),
            "pixels": pixels,
            "scene_seconds": sum(r["seconds"] for r in mapped),
            "pixels_per_second": pixels / wall if mapped else None,
        },
        "regions": regions,
        "scenes": rows,
        "failures": failures,
    }
    out = manifest.path(manifest.output)
    report["files"] = [str(p) for p in write_report(report, out)]
    return report


def _prepare_kwargs(manifest: Manifest, r: Region) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"out": region_dir(manifest, r) / "adapted.bundle",
                              "steps": r.steps, "guard": r.guard}  # fmt: skip
    if r.adapted is not None:
        kwargs["adapted"] = manifest.path(r.adapted)
    else:
        kwargs["bundle"] = manifest.path(r.bundle)  # type: ignore[arg-type]
        kwargs["support"] = manifest.path(r.support)  # type: ignore[arg-type]
    return kwargs


def _has_dashboard(client: Client) -> bool:
    try:
        return "dashboard" in client.scheduler_info().get("services", {})
    except Exception:  # an old scheduler without the field
        return False


def print_dashboard(client: Client) -> None:
    """Print the Dask dashboard's address (or how to get one) to stderr."""
    if not _has_dashboard(client):
        print("landcover batch: the scheduler serves no dashboard", file=sys.stderr)
        return
    note = "" if importlib.util.find_spec("bokeh") else " (its pages need bokeh>=3.1 installed)"
    print(f"landcover batch: Dask dashboard at {client.dashboard_link}{note}", file=sys.stderr)
