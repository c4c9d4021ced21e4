"""What runs on the Dask workers: prepare a region's model, map a scene or a block.

Every function here is a task of the graph built by :mod:`~landcover.batch.engine`.
A region's model travels as a :class:`RegionModel` (the bundle's bytes and digest): it is
the result of the region's preparation task, so Dask sends it to each worker that maps
the region's scenes once, and each worker process builds its predictor once per bundle
(:func:`predictor_for`). Scenes are mapped by ``landcover predict``'s own
:func:`~landcover.inference.predict_raster.predict_raster`, so the outputs are the same files.
Failures are raised as :class:`~landcover.batch.errors.SceneError` (plain text, always
picklable); Dask retries the task, then the run report records the message.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landcover.batch.areas import class_areas
from landcover.batch.blocks import Block, assemble, block_paths
from landcover.batch.errors import SceneError
from landcover.batch.manifest import PredictOptions
from landcover.batch.records import (
    RECORD_VERSION,
    digest_folder,
    file_digest,
    output_stamps,
    read_record,
    source_stamp,
    write_json,
)
from landcover.batch.scenes import Scene
from landcover.batch.vrt import subset_vrt

#: Predictors kept per worker process (one per bundle digest).
_MAX_PREDICTORS = 4
_PREDICTORS: OrderedDict[str, Any] = OrderedDict()


@dataclass(frozen=True)
class RegionModel:
    """A region's (adapted) bundle as it travels to the workers.

    Attributes:
        region: The region's name.
        digest: SHA-256 of the bundle file.
        data: The bundle file's bytes.
        provenance: Base bundle, adapted bundle, support folder and tiles, guard report.
    """

    region: str
    digest: str
    data: bytes
    provenance: dict[str, Any] = field(default_factory=dict)


def _failed(what: str, err: BaseException) -> SceneError:
    """A picklable error naming the task and the original error's type and message."""
    return SceneError(f"{what}: {type(err).__name__}: {err}")


def adaptation_record(out: Path) -> Path:
    """The record of a region's adapted bundle ``out``."""
    return out.with_suffix(".json")


def adaptation_key(base: Path, support: Path, steps: int | None, guard: bool) -> dict[str, Any]:
    """What an adaptation depends on: base bundle, support tiles, steps and guard."""
    return {
        "base_bundle": str(base.resolve()),
        "base_sha256": file_digest(base),
        "support": str(support.resolve()),
        "support_sha256": digest_folder(support),
        "steps": steps,
        "guard": guard,
    }


def reusable_adaptation(out: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The record of ``out`` when it was adapted with ``key`` and is intact, else ``None``."""
    record = read_record(adaptation_record(out))
    if record is None or record.get("key") != key or not out.is_file():
        return None
    return record if file_digest(out) == record.get("adapted_sha256") else None


def prepare_region(
    region: str,
    *,
    out: Path,
    adapted: Path | None = None,
    bundle: Path | None = None,
    support: Path | None = None,
    steps: int | None = None,
    guard: bool = True,
) -> RegionModel:
    """The region's model: an adapted bundle as given, or adapted once on ``support``.

    Adaptation is ``landcover adapt``'s (:func:`~landcover.inference.adapt.adapt_folder`,
    guarded unless ``guard`` is false); the adapted bundle is saved to ``out`` with a
    record, and reused by later runs while the base bundle, the support tiles, ``steps``
    and ``guard`` are unchanged.
    """
    try:
        if adapted is not None:
            data = adapted.read_bytes()
            prov = {"adapted_bundle": str(adapted.resolve()), "adapted": "given"}
            return RegionModel(region, file_digest(adapted), data, prov)
        if bundle is None or support is None:
            raise ValueError("needs 'adapted', or 'bundle' with 'support'")
        key = adaptation_key(bundle, support, steps, guard)
        record = reusable_adaptation(out, key)
        if record is None:
            from landcover.inference.adapt import adapt_folder
            from landcover.inference.bundle import ModelBundle

            result = adapt_folder(ModelBundle.load(bundle), support, steps, guard=guard)
            result.bundle.save(out)
            record = {
                "version": RECORD_VERSION,
                "key": key,
                "adapted_sha256": file_digest(out),
                "summary": result.summary(),
                "support_tiles": result.bundle.info.get("support", {}).get("tiles", []),
            }
            write_json(adaptation_record(out), record)
            reused = False
        else:
            reused = True
        prov = {
            **key,
            "adapted_bundle": str(out.resolve()),
            "adapted": "reused" if reused else "adapted",
            "support_tiles": record["support_tiles"],
            "guard_report": record["summary"]["report"],
            "adaptation_seconds": record["summary"]["seconds"],
        }
        return RegionModel(region, record["adapted_sha256"], out.read_bytes(), prov)
    except Exception as err:
        raise SceneError(
            f"region {region}: adaptation failed: {type(err).__name__}: {err}"
        ) from None


def predictor_for(model: RegionModel) -> Any:
    """This process's predictor of ``model`` (built once per bundle digest)."""
    if model.digest in _PREDICTORS:
        _PREDICTORS.move_to_end(model.digest)
        return _PREDICTORS[model.digest]
    import torch

    from landcover.inference.bundle import ModelBundle
    from landcover.inference.predict import Predictor

    try:
        from distributed import get_worker

        threads = getattr(get_worker().state, "nthreads", None)
    except (ImportError, ValueError):  # not on a Dask worker
        threads = None
    if threads:
        torch.set_num_threads(int(threads))
    with tempfile.TemporaryDirectory(prefix="landcover-bundle-") as tmp:
        path = Path(tmp) / "model.bundle"
        path.write_bytes(model.data)
        predictor = Predictor.from_bundle(ModelBundle.load(path), "cpu")
    _PREDICTORS[model.digest] = predictor
    while len(_PREDICTORS) > _MAX_PREDICTORS:
        _PREDICTORS.popitem(last=False)
    return predictor


def _predict_kwargs(opts: PredictOptions) -> dict[str, Any]:
    """``predict_raster``'s keyword arguments for ``opts`` (as ``landcover predict``)."""
    from landcover.inference.vectorize import VectorOptions

    vector = VectorOptions(int(opts.min_area), opts.min_area_m2, opts.simplify)
    return {"window": opts.window, "overlap": opts.overlap, "style": opts.style,
            "cog": opts.cog, "batch_size": opts.batch_size, "progress": False,
            "vector": vector}  # fmt: skip


def scene_sources(scene: Scene) -> list[dict[str, Any]]:
    """Versions of the files a scene is read from (its record's ``source``)."""
    hrefs = scene.provenance.get("hrefs") or [scene.provenance.get("path") or scene.input]
    return [source_stamp(h) for h in hrefs]


def _finish(scene: Scene, model: RegionModel, opts: PredictOptions, paths: list[Path],
            size: tuple[int, int], seconds: float, blocks: int) -> dict[str, Any]:  # fmt: skip
    """Write the scene's completion record (last, atomically); return it."""
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        worker = None
    record = {
        "version": RECORD_VERSION,
        "scene": scene.id,
        "region": scene.region,
        "source": scene_sources(scene),
        "bundle_sha256": model.digest,
        "options": opts.model_dump(),
        "classes": str(scene.classes),
        "outputs": output_stamps(paths),
        "width": size[0],
        "height": size[1],
        "seconds": seconds,
        "blocks": blocks,
        "worker": worker,
        "areas": class_areas(scene.classes),
        "provenance": scene.provenance,
    }
    write_json(scene.record, record)
    return record


def map_scene(model: RegionModel, scene: Scene, opts: PredictOptions) -> dict[str, Any]:
    """Map a whole scene with ``predict_raster``; returns its completion record."""
    from landcover.inference.predict_raster import predict_raster

    start = time.perf_counter()
    try:
        result = predict_raster(
            predictor_for(model), scene.input, scene.classes, probabilities=scene.probabilities,
            geojson=scene.geojson, gpkg=scene.gpkg, **_predict_kwargs(opts),
        )  # fmt: skip
        paths = [result.classes_path, result.probabilities_path, result.geojson_path,
                 result.info.get("gpkg_path"), *result.info.get("sidecars", [])]  # fmt: skip
        return _finish(scene, model, opts, [Path(p) for p in paths if p], (result.width,
                       result.height), time.perf_counter() - start, 1)  # fmt: skip
    except Exception as err:
        raise _failed(f"{scene.region}/{scene.id}", err) from None


def map_block(model: RegionModel, scene: Scene, block: Block, opts: PredictOptions) -> float:
    """Map one block of a scene into its scratch folder; returns the seconds it took."""
    from landcover.inference.predict_raster import predict_raster

    start = time.perf_counter()
    try:
        classes, probs = block_paths(scene.work, block, opts.probabilities)
        src = subset_vrt(scene.input, scene.work / f"block{block.index:04d}.vrt", rows=block.read)
        # scratch files, read once by the assembly: not compressed (the assembly's COG is)
        kwargs = {**_predict_kwargs(opts), "cog": False, "compress": None,
                  "style": opts.style and block.index == 0}  # fmt: skip
        predict_raster(predictor_for(model), src, classes, probabilities=probs, **kwargs)
    except Exception as err:
        raise _failed(f"{scene.region}/{scene.id} block {block.index}", err) from None
    return time.perf_counter() - start


def assemble_scene(
    model: RegionModel, scene: Scene, blocks: list[Block], opts: PredictOptions, *seconds: float
) -> dict[str, Any]:
    """Put a scene's blocks together (after every :func:`map_block`); returns its record.

    ``seconds``: the blocks' times (the results of the :func:`map_block` tasks, which also
    makes this task run after them).
    """
    from landcover.geo.raster import read_profile

    start = time.perf_counter()
    try:
        profile = read_profile(scene.input)
        paths = assemble(blocks, scene.work, profile, scene.classes, scene.probabilities,
                         cog=opts.cog, style=opts.style)  # fmt: skip
        total = sum(seconds) + time.perf_counter() - start
        record = _finish(scene, model, opts, paths, (profile.width, profile.height), total,
                         len(blocks))  # fmt: skip
    except Exception as err:
        raise SceneError(
            f"{scene.region}/{scene.id} assembly: {type(err).__name__}: {err}"
        ) from None
    shutil.rmtree(scene.work, ignore_errors=True)
    return record
