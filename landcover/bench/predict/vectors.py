"""Vector part of ``landcover bench predict``: polygons of a class map before/after generalisation.

The map to vectorise must look like a map the product makes, not like noise: a
1024² procedural landscape (fields, forest, rivers, roads, settlements;
:func:`landcover.geo.synthetic.generate_region`) segmented by the default CPU model
(small U-Net, MAML++) trained in a few seconds from a few labelled tiles of that landscape
(:data:`TRAIN_TILES` tiles of 128², :data:`TRAIN_STEPS` Adam steps, as an adapted model
would be). Its pixel accuracy against the landscape's truth is reported with it. The
untrained model's map of the same landscape (weights at initialisation, BatchNorm
statistics from the data: salt-and-pepper speckle, the map the issue counted 12,824
polygons on) is measured too, as the stress case.

For each minimum mapping unit (GDAL sieve, 4-connected) with the default simplification
(GEOS coverage simplification, 1 px): polygon count, pixel agreement of the rasterised
polygons with the unfiltered class map and with the sieved class map (what the
simplification alone changes), accuracy against the truth, and the topology of the layer
(overlapping and uncovered area between the polygons, GEOS' coverage validation). For the
reduction a given factor asks for, the best agreement any generalisation could reach is
reported as well: keeping only the ``n / factor`` largest regions, every pixel of the other
regions must change class.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from landcover.geo.map_values import map_scheme

#: Labelled tiles (128²) and Adam steps of the realistic map's model.
TRAIN_TILES, TRAIN_STEPS, TRAIN_TILE = 4, 60, 128
#: Minimum mapping units of the sweep (pixels).
MMU_SWEEP = (4, 8, 16, 32, 64)


def landscape(path: Path, size: int = 1024) -> tuple[Path, np.ndarray]:
    """A ``size``² 4-band landscape GeoTIFF and its ``(size, size)`` truth (class indices)."""
    import rasterio
    from affine import Affine

    from landcover.geo.synthetic import SynthConfig, generate_region

    n = size // 64
    region = generate_region(SynthConfig(regions=1, tiles_per_region=n * n, tile_size=64), 0)
    image = region.images.reshape(n, n, 4, 64, 64).transpose(2, 0, 3, 1, 4)
    truth = region.masks.reshape(n, n, 64, 64).transpose(0, 2, 1, 3).reshape(n * 64, n * 64)
    profile = {"driver": "GTiff", "width": n * 64, "height": n * 64, "count": 4,
               "dtype": "uint16", "crs": "EPSG:32632", "tiled": True,
               "transform": Affine(10, 0, 300_000, 0, -10, 5_000_000)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image.reshape(4, n * 64, n * 64))
    return path, truth.astype(np.uint8)


def trained_bundle(
    path: Path, raster: Path, truth: np.ndarray, *, tiles: int = TRAIN_TILES,
    steps: int = TRAIN_STEPS, seed: int = 0,
) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """The default model trained from scratch on ``tiles`` labelled tiles of ``raster``.

    Cross-entropy, Adam (lr 3e-3), batches of 8 crops drawn from the labelled tiles; the
    MAML++ learner's meta weights are the trained weights (``predict`` with no adaptation).
    """
    import rasterio
    import torch

    from landcover.geo.synthetic import SYNTH_SCHEME
    from landcover.inference.bundle import ModelBundle
    from landcover.inference.testing import tiny_bundle
    from landcover.meta.protocol import AdaptedState

    with rasterio.open(raster) as src:
        image = src.read().astype(np.float32)
    mean, std = image.reshape(4, -1).mean(1), image.reshape(4, -1).std(1) + 1e-6
    torch.manual_seed(seed)
    base = tiny_bundle(4, SYNTH_SCHEME.num_classes, learner="mamlpp", model_options={},
                       mean=mean.tolist(), std=std.tolist(), tile_size=TRAIN_TILE)  # fmt: skip
    learner = base.build_learner()
    x = torch.from_numpy((image - mean[:, None, None]) / std[:, None, None])
    y = torch.from_numpy(truth.astype(np.int64))
    rng = np.random.default_rng(seed)
    t, size = TRAIN_TILE, truth.shape[0]
    corners = rng.integers(0, size - t + 1, size=(tiles, 2))
    opt = torch.optim.Adam(learner.parameters(), lr=3e-3)
    learner.train()
    start = time.perf_counter()
    for _ in range(steps):
        pick = corners[rng.integers(0, tiles, 8)]
        xb = torch.stack([x[:, a : a + t, b : b + t] for a, b in pick])
        yb = torch.stack([y[a : a + t, b : b + t] for a, b in pick])
        loss = torch.nn.functional.cross_entropy(learner.predict(AdaptedState(), xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    bundle = ModelBundle.from_learner(
        learner.eval(), bands=base.bands, mean=base.mean, std=base.std, classes=SYNTH_SCHEME,
        tile_size=t, info={"note": "bench model trained on a few tiles of the landscape"},
    )  # fmt: skip
    info = {"labelled_tiles": tiles, "tile": t, "steps": steps,
            "labelled_share": tiles * t * t / truth.size,
            "train_seconds": time.perf_counter() - start}  # fmt: skip
    return bundle.save(path), info


def best_agreement(classes: np.ndarray, factor: float, nodata: int = 255) -> float:
    """Upper bound of the agreement of any map with ``factor`` x fewer regions.

    Keeping the ``n / factor`` largest 4-connected regions of ``classes`` unchanged, every
    pixel of the other regions changes class (it joins a neighbour of another class).
    """
    sizes = np.sort(_region_sizes(classes, nodata))[::-1]
    keep = int(len(sizes) // factor)
    valid = int((classes != nodata).sum())
    return float(sizes[:keep].sum() / max(valid, 1))


def _region_sizes(classes: np.ndarray, nodata: int) -> np.ndarray:
    """Pixel counts of the 4-connected regions of each class."""
    from scipy import ndimage

    out = []
    for c in np.unique(classes):
        if c == nodata:
            continue
        lab, _ = ndimage.label(classes == c)  # 4-connectivity (the default structure)
        out.append(np.bincount(lab.ravel())[1:])
    return np.concatenate(out) if out else np.zeros(0, int)


def sweep(
    classes: np.ndarray, probs: np.ndarray, truth: np.ndarray | None, scheme: Any,
    transform: Any, crs: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    """Polygons, agreements, accuracy and topology for each generalisation setting."""
    import rasterio.features
    import shapely

    from landcover.inference.vectorize import EXACT, VectorOptions, polygons, sieve_map

    defaults = VectorOptions()
    cases = [("every pixel region (before)", EXACT)]
    cases += [(f"min area {n} px", VectorOptions(min_area_px=n)) for n in MMU_SWEEP]
    cases += [(f"{defaults.min_area_px} px, not simplified",
               VectorOptions(min_area_px=defaults.min_area_px, simplify=0.0))]  # fmt: skip
    valid = classes != 255
    px = abs(transform.a * transform.e)
    rows = []
    for label, opts in cases:
        if opts == defaults:
            label = f"defaults: {label} (after)"
        start = time.perf_counter()
        geoms, attrs = polygons(classes, scheme, transform=transform, crs=crs, options=opts,
                                probabilities=probs)  # fmt: skip
        seconds = time.perf_counter() - start
        burnt = rasterio.features.rasterize(
            ((g, a["class_id"]) for g, a in zip(geoms, attrs)), out_shape=classes.shape,
            transform=transform, fill=255, dtype="uint8",
        )  # fmt: skip
        sieved = sieve_map(classes, opts.min_area_px)
        arr = np.array(geoms, dtype=object)
        if opts.simplify == 0:  # GDAL's outlines, noded at every pixel corner
            arr = shapely.segmentize(arr, np.sqrt(px))
        try:
            union = shapely.coverage_union_all(arr) if len(arr) else None
        except shapely.errors.GEOSException:  # not a noded coverage: the general union
            union = shapely.union_all(arr)
        area_sum = float(shapely.area(arr).sum()) / px
        union_area = float(union.area) / px if union is not None else 0.0
        rows.append({
            "case": label, "min_area_px": opts.min_area_px, "simplify_px": opts.simplify,
            "polygons": len(geoms), "seconds": seconds,
            "pixel_agreement": float((burnt[valid] == classes[valid]).mean()),
            "agreement_with_sieved": float((burnt[valid] == sieved[valid]).mean()),
            "sieve_agreement": float((sieved[valid] == classes[valid]).mean()),
            "accuracy": None if truth is None else float((burnt[valid] == truth[valid]).mean()),
            "overlap_px": area_sum - union_area,
            "gap_px": float(valid.sum()) - union_area,
            "coverage_valid": bool(shapely.coverage_is_valid(arr)),
        })  # fmt: skip
    return rows


def map_result(
    name: str, bundle: Path, raster: Path, truth: np.ndarray | None, out: Path,
    note: str, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Predict ``raster`` with ``bundle`` and sweep the vector settings over its map."""
    import rasterio

    from landcover.inference.bundle import ModelBundle
    from landcover.inference.predict import Predictor
    from landcover.inference.predict_raster import predict_raster

    b = ModelBundle.load(bundle)
    classes_path, probs_path = out / f"{name}_map.tif", out / f"{name}_probs.tif"
    predict_raster(
        Predictor.from_bundle(b),
        raster,
        classes_path,
        probabilities=probs_path,
        progress=False,
        class_values="index",
    )  # fmt: skip  (the truth: indices)
    with rasterio.open(classes_path) as src:
        arr, transform, crs = src.read(1), src.transform, src.crs
    with rasterio.open(probs_path) as src:
        probs = np.nan_to_num(src.read())
    rows = sweep(arr, probs, truth, map_scheme(b.scheme(), "index"), transform, crs)
    before = rows[0]
    after = next(r for r in rows if r["case"].startswith("defaults"))
    valid = arr != 255
    return {
        "map": f"{arr.shape[1]}x{arr.shape[0]}", "source": note, **(extra or {}),
        "map_accuracy": None if truth is None else float((arr[valid] == truth[valid]).mean()),
        "truth_polygons": None if truth is None else _truth_polygons(truth),
        "rows": rows, "polygons_before": before["polygons"], "polygons_after": after["polygons"],
        "reduction": before["polygons"] / max(after["polygons"], 1),
        "agreement_after": after["pixel_agreement"],
        "agreement_after_vs_sieved": after["agreement_with_sieved"],
        "best_agreement_at_10x": best_agreement(arr, 10.0),
    }  # fmt: skip


def _truth_polygons(truth: np.ndarray) -> int:
    return len(_region_sizes(truth, 255))


def vectors(out: Path, size: int, speckle_bundle: Any, steps: int = TRAIN_STEPS) -> dict[str, Any]:
    """The vector section of the bench: the realistic map, then the speckle map."""
    raster, truth = landscape(out / "landscape.tif", size)
    bundle, info = trained_bundle(out / "landscape_trained.bundle", raster, truth, steps=steps)
    real = map_result(
        "trained",
        bundle,
        raster,
        truth,
        out,
        "small U-Net trained on a few labelled tiles of the landscape",
        info,
    )
    speckle = map_result("untrained", speckle_bundle(out / "landscape.bundle", raster), raster,
                         truth, out, "untrained small U-Net (BatchNorm statistics from the "
                         "data): speckle")  # fmt: skip
    return {**real, "speckle": speckle}
