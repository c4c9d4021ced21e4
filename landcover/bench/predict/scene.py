"""Parts of ``landcover bench predict``: a whole scene, the engines, the vector output.

- *Scene*: a Sentinel-2-sized raster (10980 x 10980, 4 bands, uint16, tiled; written once
  per run to a temporary folder, strip by strip) through the fast path of
  ``landcover predict --engine onnxruntime`` (its default window, balanced to the raster,
  and overlap; all threads), in a
  fresh process whose peak memory (``VmHWM``, reset after warm-up) is reported next to the
  time.
- *Engines*: a crop of the scene through the reference, *exact* inference (one window
  over the whole crop, torch: no window borders), torch with the default windows, and the
  fast paths; pixel agreement of their class maps with the reference (the fast path must
  agree on >= 0.999 of the pixels) and with torch on the same windows.

The vector part is :mod:`landcover.bench.predict.vectors`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# The fast path's window and overlap: ``landcover predict --engine onnxruntime``'s defaults.
from landcover.inference.predict_cli import FAST_OVERLAP, FAST_WINDOW


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`landcover.bench.predict._child` in a fresh process; its JSON result."""
    cmd = [sys.executable, "-m", "landcover.bench.predict", "--child", json.dumps(spec)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)  # stderr: progress
    return json.loads(out.stdout.strip().splitlines()[-1])


def crop(src: Path, out: Path, size: int) -> Path:
    """The top-left ``size x size`` pixels of ``src`` as a GeoTIFF with its profile."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(src) as s:
        win = Window(0, 0, min(size, s.width), min(size, s.height))
        profile = {**s.profile, "width": int(win.width), "height": int(win.height),
                   "transform": s.window_transform(win)}  # fmt: skip
        data = s.read(window=win)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


def agreement(a: Path, b: Path) -> float:
    """Share of pixels where two class-map GeoTIFFs agree."""
    import rasterio

    with rasterio.open(a) as x, rasterio.open(b) as y:
        return float((x.read(1) == y.read(1)).mean())


def engines(bundle: Path, raster: Path, out: Path, threads: int) -> list[dict[str, Any]]:
    """Reference path against the fast paths on one raster (time, px/s, agreement)."""
    import rasterio
    import torch

    from landcover.inference.bundle import ModelBundle
    from landcover.inference.predict import Predictor, default_window
    from landcover.inference.predict_raster import predict_raster

    torch.set_num_threads(threads)
    b = ModelBundle.load(bundle)
    ref_window = default_window(b)
    with rasterio.open(raster) as src:
        whole = max(src.width, src.height)
    cases = [  # the reference: one window over the whole crop (no window borders at all)
        ("exact (reference)", "torch", whole, 0, "fp32"),
        ("torch, default windows", "torch", ref_window, ref_window // 4, "fp32"),
        ("torch, fast windows", "torch", FAST_WINDOW, FAST_OVERLAP, "fp32"),
        ("fast path", "onnxruntime", FAST_WINDOW, FAST_OVERLAP, "fp32"),
        ("fast path, int8 asked", "onnxruntime", FAST_WINDOW, FAST_OVERLAP, "int8"),
    ]
    rows: list[dict[str, Any]] = []
    for label, engine, window, overlap, precision in cases:
        predictor = Predictor.from_bundle(b, engine=engine)
        path = out / f"engine_{engine}_{window}_{precision}.tif"
        start = time.perf_counter()
        note = predictor.use_int8(raster) if precision == "int8" else ""
        res = predict_raster(predictor, raster, path, window=window, overlap=overlap,
                             batch_size=1, progress=False,
                             balance=window == FAST_WINDOW)  # fmt: skip
        seconds = time.perf_counter() - start
        rows.append({"case": label, "engine": engine, "precision": predictor.precision,
                     "note": note, "window_used": res.info["window"],
                     "window": window, "overlap": overlap, "workers": predictor.workers,
                     "overlap_factor": (window / (window - overlap)) ** 2,
                     "seconds": seconds, "px_per_s": res.width * res.height / seconds,
                     "path": str(path)})  # fmt: skip
    exact, torch_default, torch_same = (Path(rows[i]["path"]) for i in (0, 1, 2))
    for r in rows:
        r["agreement_with_reference"] = agreement(exact, Path(r["path"]))
        r["agreement_with_exact"] = r["agreement_with_reference"]
        r["agreement_with_torch_default"] = agreement(torch_default, Path(r["path"]))
        r["agreement_with_torch_same_windows"] = agreement(torch_same, Path(r["path"]))
        r["speedup"] = rows[1]["seconds"] / r["seconds"]  # against torch's default windows
    for r in rows:
        del r["path"]
    return rows


def scene_row(spec: dict[str, Any], size: int) -> dict[str, Any]:
    """Time and peak memory of the fast path on the ``size``² scene (a fresh process)."""
    r = run_child(spec)
    return {"raster": f"{size}x{size}", "bands": 4, "dtype": "uint16", **r,
            "px_per_s": size * size / max(r["seconds"], 1e-9),
            "under_2_minutes": r["seconds"] < 120}  # fmt: skip
