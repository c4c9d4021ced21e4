"""Vectorising cost of ``landcover bench predict``: time and peak memory against map size.

The class maps are speckled, the stress case of the vector output (an untrained or
poorly adapted model's map): smooth class fields (5 classes, bilinear 16-px-cell random
fields) under pixel noise (sigma :data:`NOISE`), with their softmax as the uint8
probabilities that give ``mean_prob``. Written strip by strip, so the bench itself stays
small. For each size, :func:`landcover.inference.vectorize.write_vectors` writes the
GeoPackage, then the GeoJSON, each in a fresh process (:func:`run_child`; the peak
resident memory is reset after the imports, as for prediction) with the default
generalisation (minimum mapping unit 16 px, simplification 1 px): seconds, seconds per
Mpx (constant if time is linear in pixels), peak memory growth (flat if memory does not
grow with the map), polygons and file size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Map sides of the default run, and with ``--quick``.
SIZES, QUICK_SIZES = (1024, 4096), (256, 1024)
#: Pixel noise over the class fields (std of the logits' noise; fields have std ~1).
NOISE = 0.15
CLASSES = 5


def speckled_map(folder: Path, size: int, seed: int = 0) -> tuple[Path, Path]:
    """A ``size``² speckled class map and its uint8 probabilities, strip by strip."""
    import rasterio
    from affine import Affine
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(CLASSES, size // 16 + 2, size // 16 + 2))
    base = {"driver": "GTiff", "width": size, "height": size, "crs": "EPSG:32632",
            "transform": Affine(10, 0, 500_000, 0, -10, 5_000_000), "tiled": True,
            "dtype": "uint8"}  # fmt: skip
    classes, probs = folder / f"classes_{size}.tif", folder / f"probs_{size}.tif"
    with rasterio.open(classes, "w", count=1, nodata=255, **base) as c, \
            rasterio.open(probs, "w", count=CLASSES, **base) as p:  # fmt: skip
        for row0 in range(0, size, 256):
            n = min(256, size - row0)
            y, x = np.mgrid[row0 : row0 + n, 0:size] / 16.0
            logits = np.stack([ndimage.map_coordinates(f, [y, x], order=1) for f in coarse])
            logits += rng.normal(0, NOISE, logits.shape)
            e = np.exp(logits - logits.max(0))
            win = rasterio.windows.Window(0, row0, size, n)
            c.write(logits.argmax(0).astype(np.uint8), 1, window=win)
            p.write(np.round(255 * e / e.sum(0)).astype(np.uint8), window=win)
    return classes, probs


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: vectorise one map into one format; time and peak memory."""
    from landcover.geo.classes import ClassScheme
    from landcover.inference.vectorize import write_vectors

    scheme = ClassScheme(names=tuple(f"class {i}" for i in range(CLASSES)),
                         values=tuple(range(CLASSES)))  # fmt: skip
    out = Path(spec["out"])
    before = _status_mb("VmRSS")
    try:  # reset the peak (VmHWM) to the current size (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    start = time.perf_counter()
    res = write_vectors(spec["classes"], scheme, probabilities=spec["probabilities"],
                        **{spec["format"]: out})  # fmt: skip
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "growth_mb": _status_mb("VmHWM") - before,
            "polygons": res["polygons"], "file_mb": out.stat().st_size / 2**20,
            "peak_was_reset": reset}  # fmt: skip


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """:func:`child` in a fresh process; its JSON result."""
    cmd = [sys.executable, "-m", "landcover.bench.predict", "--vector-child", json.dumps(spec)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def scaling(folder: Path, sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """One row per (size, format): seconds, s/Mpx, peak growth, polygons, file size."""
    rows = []
    for size in sizes:
        classes, probs = speckled_map(folder, size)
        for fmt, suffix in (("gpkg", ".gpkg"), ("geojson", ".geojson")):
            out = folder / f"vectors_{size}{suffix}"
            r = run_child({"classes": str(classes), "probabilities": str(probs),
                           "format": fmt, "out": str(out)})  # fmt: skip
            out.unlink()
            mpx = size * size / 1e6
            rows.append({"map": f"{size}x{size}", "format": fmt, "mpx": mpx,
                         "s_per_mpx": r["seconds"] / mpx, **r})  # fmt: skip
        classes.unlink()
        probs.unlink()
    return rows


def print_scaling(rows: list[dict[str, Any]]) -> None:
    """The table of :func:`scaling`."""
    print("\nvectorising cost (speckled maps, defaults 16 px / 1 px, fresh process each)")
    print(f"{'map':>11} {'format':<8} {'seconds':>8} {'s/Mpx':>6} {'peak +MB':>9} "
          f"{'polygons':>9} {'file MB':>8}")  # fmt: skip
    for r in rows:
        print(f"{r['map']:>11} {r['format']:<8} {r['seconds']:>8.1f} {r['s_per_mpx']:>6.2f} "
              f"{r['growth_mb']:>9.1f} {r['polygons']:>9,} {r['file_mb']:>8.1f}")  # fmt: skip
    for fmt in ("gpkg", "geojson"):
        mine = [r for r in rows if r["format"] == fmt]
        if len(mine) >= 2:
            a, b = mine[0], mine[-1]
            print(
                f"{fmt}: {b['mpx'] / a['mpx']:.0f}x the pixels -> "
                f"{b['seconds'] / a['seconds']:.1f}x the time, "
                f"{b['growth_mb'] / max(a['growth_mb'], 1e-9):.1f}x the peak memory growth"
            )
