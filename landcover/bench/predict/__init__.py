"""``landcover bench predict``: cost of the GeoTIFF prediction path and its memory bound.

Measurements on synthetic 4-band uint16 GeoTIFFs and the default CPU model (small U-Net,
0.49 M parameters, 5 classes, the default learner MAML++ with its per-step BatchNorm):

1. *Throughput*: pixels per second of the whole path of ``landcover predict``
   (windowed reads, normalisation, overlapping windows, blending, argmax, windowed GeoTIFF
   writes) against the raw model forward over the same pixels (non-overlapping windows,
   no I/O). Their ratio is the overhead; overlapping windows alone account for
   ``(window / (window - overlap))²`` of it, reported as "overlap factor".
2. *Memory*: peak resident memory (``ru_maxrss``, each run in a fresh subprocess, the
   peak reset after the model is loaded and warmed up) of predicting a raster one strip
   high (the window budget: ``window`` rows) and one 4x larger (``4 * window`` rows, same
   width; and 8x without ``--quick``), next to a subprocess that predicts nothing. The
   one-strip raster never moves the strip accumulators down, taller ones do (a transient
   copy of the strip) and fill GDAL's block cache, so 4x costs a little more than 1x;
   8x must cost what 4x costs. Holding a raster's image and probabilities in memory would
   need the "in-memory need" column on top. Measured for the fast path (``--engine
   onnxruntime``, its default window and overlap).
3. *Scene*, *engines* and *vectors* (:mod:`landcover.bench.predict.scene`): a whole
   10980² scene through the fast path (time, peak memory), the engines against the
   reference path on a crop (speed, agreement), and the polygon counts of the vector
   output before/after generalisation with the agreement of the rasterised polygons.
4. *Vector cost*: predict with and without ``--gpkg`` / ``--geojson`` (time, peak memory,
   polygons, file sizes), and vectorising alone against map size (1024², 4096²;
   :mod:`landcover.bench.predict.vector_cost`): time per Mpx and peak memory growth, to
   show time linear in pixels and memory that does not grow with the map.
   ``--only-vectors`` runs this section alone (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH_NAME = "predict"
BENCH_HELP = "GeoTIFF predict path vs raw forward (px/s, overhead), peak memory vs raster size"

BANDS, CLASSES = 4, 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the bench."""
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--window", type=int, default=None, help="window size (default 512)")
    parser.add_argument("--width", type=int, default=None, help="raster width (default 2048)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument(
        "--scene",
        type=int,
        default=None,
        help="scene size in px (default 10980; 1536 with --quick)",
    )
    parser.add_argument(
        "--crop",
        type=int,
        default=None,
        help="crop for the engine comparison (default 2048; 768 with --quick)",
    )
    parser.add_argument("--device", default="cpu", help="torch device for the model")
    parser.add_argument(
        "--fast-window",
        type=int,
        default=None,
        help="window of the fast path (default: that of predict --engine onnxruntime)",
    )
    parser.add_argument(
        "--only-scene",
        action="store_true",
        help="only the scene timing; updates the 'scene' entry of --json",
    )
    parser.add_argument(
        "--only-vectors",
        action="store_true",
        help="only the vector output's cost (predict with/without vectors, vectorising time "
        "and memory against map size); updates those entries of --json",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        default="fp32",
        help="precision of the fast path (int8: used only where it agrees)",
    )
    parser.add_argument(
        "--real",
        type=Path,
        default=Path("../shared/data/dubai-aerial"),
        help="dubai-aerial folder: window agreement on its largest real image (skipped if absent)",
    )
    parser.add_argument(
        "--only-pretrained",
        action="store_true",
        help="only the shipped pretrained network (window agreement on --real, a --scene² "
        "RGB scene through predict's default path); updates the 'pretrained' entry of --json",
    )
    parser.add_argument("--json", default=None, metavar="FILE", help="write results as JSON")


def _write_raster(path: Path, height: int, width: int, seed: int = 0) -> Path:
    """A 4-band uint16 GeoTIFF with smooth random structure, written strip by strip."""
    import rasterio
    from affine import Affine
    from rasterio.crs import CRS

    rng = np.random.default_rng(seed)
    profile = {"driver": "GTiff", "width": width, "height": height, "count": BANDS,
               "dtype": "uint16", "crs": CRS.from_epsg(32632), "nodata": 0, "tiled": True,
               "transform": Affine(10, 0, 500_000, 0, -10, 5_000_000)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for y0 in range(0, height, 256):
            n = min(256, height - y0)
            coarse = rng.uniform(500, 3000, size=(BANDS, n // 16 + 1, width // 16 + 1))
            block = coarse.repeat(16, 1).repeat(16, 2)[:, :n, :width]
            block = block + rng.normal(0, 100, size=block.shape)
            dst.write(block.clip(1, 65535).astype(np.uint16),
                      window=rasterio.windows.Window(0, y0, width, n))  # fmt: skip
    return path


def _bundle(path: Path, raster: Path) -> Path:
    """The bench model: small U-Net (defaults), MAML++, BatchNorm statistics from data.

    Untrained weights with BatchNorm's initial statistics (mean 0, variance 1) map every
    pixel to one class, which would make agreement and polygon counts trivial. So, as
    after training, the statistics come from data: one training-mode forward over 16
    windows of ``raster`` with momentum 1 sets them to those windows' batch statistics
    (Ioffe & Szegedy 2015), and the maps get the structure of the input.
    """
    import rasterio
    import torch
    from torch import nn

    from landcover.inference.bundle import ModelBundle
    from landcover.inference.testing import tiny_bundle
    from landcover.meta.protocol import AdaptedState

    torch.manual_seed(0)
    base = tiny_bundle(BANDS, CLASSES, learner="mamlpp", model_options={}, mean=1500.0,
                       std=800.0, tile_size=128)  # fmt: skip
    learner = base.build_learner()
    with rasterio.open(raster) as src:
        t = min(128, src.height, src.width)
        h, w = min(512, src.height) // t * t, min(512, src.width) // t * t
        data = torch.from_numpy(src.read(window=rasterio.windows.Window(0, 0, w, h)))
    x = base.normalize(data.float()).unfold(1, t, t).unfold(2, t, t)
    x = x.permute(1, 2, 0, 3, 4).reshape(-1, BANDS, t, t)
    norms = [m for m in learner.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = 1.0
    learner.train()
    with torch.no_grad():
        learner.predict(AdaptedState(), x)
    for m in norms:
        m.momentum = 0.1
    bundle = ModelBundle.from_learner(
        learner.eval(), bands=base.bands, mean=base.mean, std=base.std, classes=base.classes,
        tile_size=128,
    )  # fmt: skip
    return bundle.save(path)


def _status_mb(key: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    """Reset the peak RSS (``ru_maxrss`` / VmHWM) of this process (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run in a subprocess: load the bundle, warm up, reset the peak, predict, report it.

    Importing torch alone peaks at hundreds of MB, which would hide what prediction costs;
    so the peak is reset (``/proc/self/clear_refs``) after the model is loaded and has run
    one batch of windows, and the peak then measures the prediction on top of that. The
    peak is read as ``VmHWM``, the memory high-water mark that ``ru_maxrss`` reports: the
    latter also keeps the peak of threads that have exited (torch's import-time ones), which
    cannot be reset.
    """
    import torch

    from landcover.inference.bundle import ModelBundle
    from landcover.inference.predict import Predictor
    from landcover.inference.predict_raster import predict_raster

    torch.set_num_threads(int(spec["threads"]))
    engine = spec.get("engine", "torch")
    predictor = Predictor.from_bundle(ModelBundle.load(spec["bundle"]), spec["device"], engine)
    int8 = ""
    if spec.get("precision") == "int8" and spec["raster"] is not None:
        int8 = predictor.use_int8(spec["raster"])
    w = int(spec["window"])
    overlap = int(spec.get("overlap", w // 4))
    bands = len(predictor.bundle.bands)
    predictor.probabilities(torch.rand(int(spec.get("batch_size", 4)), bands, w, w) * 3000)
    # reset first, then read: the high-water mark after the reset is >= every later RSS, so
    # the growth is never negative (read the other way round, memory the allocator returned
    # between the two reads made the peak fall below "before" on small rasters)
    reset = _reset_peak()
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    res = None
    if spec["raster"] is not None:
        res = predict_raster(predictor, spec["raster"], spec["out"], window=w, overlap=overlap,
                       batch_size=int(spec.get("batch_size", 4)), balance=bool(spec.get("balance")),
                       progress=bool(spec.get("progress", False)), gpkg=spec.get("gpkg"),
                       geojson=spec.get("geojson"))  # fmt: skip
    seconds = time.perf_counter() - start
    peak = _status_mb("VmHWM")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    used = res.info["window"] if res is not None else w
    sizes = {f"{k}_mb": Path(spec[k]).stat().st_size / 2**20 for k in ("gpkg", "geojson")
             if spec.get(k)}  # fmt: skip
    vec = {"vector_seconds": res.info.get("vector_seconds"),
           "polygons": res.info.get("polygons")} if res is not None else {}  # fmt: skip
    return {"window_used": used, **sizes, **vec,
            "peak_rss_mb": peak, "rss_before_mb": before, "growth_mb": peak - before,
            "ru_maxrss_mb": maxrss, "peak_was_reset": reset, "seconds": seconds,
            "precision": predictor.precision, "int8_note": int8}  # fmt: skip


def _vector_cost(fast: dict[str, Any], d: Path, side: int) -> list[dict[str, Any]]:
    """Time and peak memory of predict on a ``side``² raster without and with vectors.

    Each case in a fresh process (:func:`_child`): the map alone; with ``--gpkg``; with
    ``--gpkg`` and ``--geojson`` (one vectorising pass for both). The vectoriser reads
    the class map and the probabilities strip by strip
    (:mod:`landcover.inference.vector_blocks`).
    """
    from landcover.bench.predict import scene as ps

    raster = str(_write_raster(d / f"vec_{side}.tif", side, side, seed=5))
    rows = []
    for label, extra in (("map only", {}), ("+ gpkg", {"gpkg": str(d / "v.gpkg")}),
                         ("+ gpkg + geojson", {"gpkg": str(d / "v2.gpkg"),
                                               "geojson": str(d / "v2.geojson")})):  # fmt: skip
        r = ps.run_child({**fast, "raster": raster, "out": str(d / "vec_out.tif"), **extra})
        rows.append({"case": label, "raster": f"{side}x{side}", "seconds": r["seconds"],
                     "growth_mb": r["growth_mb"], "peak_rss_mb": r["peak_rss_mb"],
                     "polygons": r.get("polygons"), "vector_seconds": r.get("vector_seconds"),
                     "gpkg_mb": r.get("gpkg_mb"), "geojson_mb": r.get("geojson_mb")})  # fmt: skip
    for row in rows[1:]:
        row["extra_seconds"] = row["seconds"] - rows[0]["seconds"]
        row["extra_mb"] = row["growth_mb"] - rows[0]["growth_mb"]
    return rows


def _print_vectors_and_windows(
    vc: list[dict[str, Any]], windows: dict[str, Any] | None, real: Path
) -> None:
    _print_vector_cost(vc)
    if windows is None:
        print(f"\nwindow agreement: skipped ({real} not found; give --real)")
        return
    _print_windows(windows)


def _print_vector_cost(vc: list[dict[str, Any]]) -> None:
    print("\ncost of the vector output (fast path, fresh process each)")
    print(f"{'case':<18} {'raster':>11} {'seconds':>8} {'+s':>7} {'growth MB':>10} {'+MB':>7} "
          f"{'polygons':>9} {'gpkg MB':>8} {'geojson MB':>10}")  # fmt: skip
    for r in vc:
        size = {k: "-" if r.get(k) is None else f"{r[k]:.1f}" for k in ("gpkg_mb", "geojson_mb")}
        polys = "-" if r.get("polygons") is None else f"{r['polygons']:,}"
        print(f"{r['case']:<18} {r['raster']:>11} {r['seconds']:>8.2f} "
              f"{r.get('extra_seconds', 0.0):>7.2f} {r['growth_mb']:>10.1f} "
              f"{r.get('extra_mb', 0.0):>7.1f} {polys:>9} {size['gpkg_mb']:>8} "
              f"{size['geojson_mb']:>10}")  # fmt: skip


def _print_windows(windows: dict[str, Any]) -> None:
    print(f"\ndefault windows vs one whole-raster window, {windows['image']} "
          f"({windows['width']}x{windows['height']}, real aerial JPEG; transductive-BatchNorm "
          f"stride-4 U-Net fitted to its mask, pixel accuracy "
          f"{windows['fit_pixel_accuracy']:.3f})")  # fmt: skip
    default = f"default {windows['window']}/{windows['overlap']}"
    print(f"{'statistics':<24} {default:>16} {'256/64':>8}")
    for case in ("one statistic", "per-window statistics"):
        w = windows[case]
        print(f"{case:<24} {w['agreement']:>16.4f} {w['agreement_256']:>8.4f}")


def _throughput(bundle: Path, raster: Path, out: Path, window: int, device: str) -> dict[str, Any]:
    import rasterio
    import torch

    from landcover.inference.bundle import ModelBundle
    from landcover.inference.predict import Predictor
    from landcover.inference.predict_raster import predict_raster
    from landcover.inference.sliding import window_starts

    predictor = Predictor.from_bundle(ModelBundle.load(bundle), device)
    model = predictor.learner
    with rasterio.open(raster) as src:
        h, w = src.height, src.width
        ys, xs = window_starts(h, window, 0), window_starts(w, window, 0)
        tiles = [torch.from_numpy(src.read(window=rasterio.windows.Window(x, y, window, window))
                                  .astype(np.float32)) for y in ys for x in xs]  # fmt: skip
    x = torch.stack(tiles)
    x = predictor.bundle.normalize(x).to(predictor.device)
    predictor.probabilities(x[:1] * 0)  # warm-up
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(x), 4):
            model.predict(predictor.state, x[i : i + 4])
    raw_s = time.perf_counter() - start
    forwarded = x.shape[0] * x.shape[-2] * x.shape[-1]  # >= h * w (edge tiles shifted back)
    start = time.perf_counter()
    res = predict_raster(predictor, raster, out, window=window, overlap=window // 4,
                         batch_size=4, progress=False)  # fmt: skip
    full_s = time.perf_counter() - start
    pixels = h * w
    return {
        "raster": f"{w}x{h}",
        "window": window,
        "overlap": window // 4,
        "windows": res.windows,
        "raw_forward_px_per_s": forwarded / raw_s,
        "geotiff_path_px_per_s": pixels / full_s,
        "overhead_ratio": (forwarded / raw_s) / (pixels / full_s),
        "overlap_factor": (window / (window - window // 4)) ** 2,
        "raw_seconds": raw_s,
        "path_seconds": full_s,
    }


def run(args: argparse.Namespace) -> int:
    """Run the bench, print the tables, write JSON."""
    import torch

    from landcover.bench.predict import scene as ps
    from landcover.bench.predict import vector_cost as pv_cost
    from landcover.bench.predict import vectors as pv

    torch.set_num_threads(args.threads)
    window = args.window or (256 if args.quick else 512)
    width = args.width or (512 if args.quick else 2048)
    scene = args.scene or (1536 if args.quick else 10980)
    crop_size = args.crop or (768 if args.quick else 2048)
    result: dict[str, Any] = {"threads": args.threads, "memory_engine": "onnxruntime"}
    only = args.only_scene or args.only_vectors or args.only_pretrained
    if only and args.json and Path(args.json).is_file():
        result = json.loads(Path(args.json).read_text())
        if "scene" in result and args.only_scene:  # keep the earlier scene row beside
            result["scene_previous"] = result["scene"]

    def save() -> None:  # after every section: a partial result survives an interruption
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=2))

    with tempfile.TemporaryDirectory(prefix="lc-bench-predict-") as tmp:
        d = Path(tmp)
        if args.only_pretrained:
            from landcover.bench.predict import pretrained as pp

            if not args.real.is_dir():
                raise SystemExit(f"--only-pretrained needs the dubai-aerial folder: {args.real} "
                                 "is not a folder (give --real)")  # fmt: skip
            result["pretrained"] = pp.pretrained_section(args.real, d, scene=scene,
                                                         threads=args.threads)  # fmt: skip
            save()
            pp.print_section(result["pretrained"])
            return 0
        tput_raster = _write_raster(d / "tput.tif", max(width // 2, window), width)
        bundle = _bundle(d / "model.bundle", tput_raster)
        fw = args.fast_window or ps.FAST_WINDOW
        fast = {"bundle": str(bundle), "window": fw, "overlap": min(ps.FAST_OVERLAP, fw // 4),
                "threads": args.threads, "device": "cpu", "engine": "onnxruntime",
                "precision": args.precision, "batch_size": 1, "balance": True,
                "out": str(d / "mem_out.tif")}  # fmt: skip
        if args.only_vectors:
            return _only_vectors(args, fast, d, result, save)
        start = time.perf_counter()
        scene_path = _write_raster(d / "scene.tif", scene, scene, seed=3)
        gen_s = time.perf_counter() - start
        sc = ps.scene_row({**fast, "raster": str(scene_path), "out": str(d / "scene_out.tif"),
                           "progress": True}, scene)  # fmt: skip
        result["scene"] = {**sc, "generate_seconds": gen_s}
        save()
        if args.only_scene:
            print(
                f"scene {sc['raster']}: {sc['seconds']:.1f} s ({sc['px_per_s']:,.0f} px/s), "
                f"window {sc['window_used']}, {sc['precision']}, peak RSS "
                f"{sc['peak_rss_mb']:.0f} MB (+{sc['growth_mb']:.0f} MB) {sc['int8_note']}"
            )
            return 0
        eng = ps.engines(bundle, ps.crop(scene_path, d / "crop.tif", crop_size), d, args.threads)
        result["engines"] = eng
        save()
        scene_path.unlink()
        vec = result["vectors"] = pv.vectors(
            d, 256 if args.quick else 1024, _bundle, steps=10 if args.quick else pv.TRAIN_STEPS
        )
        save()
        vc = result["vector_cost"] = _vector_cost(fast, d, 512 if args.quick else 4096)
        save()
        result["vector_scaling"] = pv_cost.scaling(d, pv_cost.QUICK_SIZES if args.quick
                                                   else pv_cost.SIZES)  # fmt: skip
        save()
        if args.real.is_dir():
            from landcover.bench.predict.windows import window_agreement

            result["windows"] = window_agreement(args.real, d)
            save()
        thr = result["throughput"] = _throughput(bundle, tput_raster, d / "tput_out.tif",
                                                 window, args.device)  # fmt: skip
        save()
        rows = result["memory"] = []
        cases = [("model, no raster", None), ("at budget", fw), ("4x budget", 4 * fw)]
        if not args.quick:  # the growth must stop: 8x costs what 4x costs
            cases.append(("8x budget", 8 * fw))
        mem_width = max(width, fw)
        for label, height in cases:
            raster = None
            if height is not None:
                raster = str(_write_raster(d / f"mem_{height}.tif", height, mem_width, seed=1))
            r = ps.run_child({**fast, "raster": raster, "balance": False})  # same windows
            need = 0.0 if height is None else height * mem_width * (BANDS + CLASSES) * 4 / 2**20
            rows.append({"case": label, "raster": "-" if height is None else
                         f"{mem_width}x{height}", **r, "in_memory_need_mb": need})  # fmt: skip
        result["memory_growth_4x_mb"] = rows[2]["growth_mb"] - rows[1]["growth_mb"]
        save()
    _print(args, thr, window, rows, fw, mem_width, result["scene"], eng, vec)
    _print_vectors_and_windows(vc, result.get("windows"), args.real)
    pv_cost.print_scaling(result["vector_scaling"])
    if args.json:
        from landcover.bench.predict.plots import plot

        png = plot(result, Path(args.json).with_suffix(".png"))
        print(f"wrote {args.json} and {png}")
    return 0


def _only_vectors(
    args: argparse.Namespace, fast: dict[str, Any], d: Path, result: dict[str, Any],
    save: Any,
) -> int:  # fmt: skip
    """``--only-vectors``: the vector output's cost alone (a few minutes on 2 cores)."""
    from landcover.bench.predict import vector_cost as pv_cost

    vc = result["vector_cost"] = _vector_cost(fast, d, 512 if args.quick else 4096)
    save()
    rows = result["vector_scaling"] = pv_cost.scaling(
        d, pv_cost.QUICK_SIZES if args.quick else pv_cost.SIZES
    )
    save()
    _print_vector_cost(vc)
    pv_cost.print_scaling(rows)
    if args.json:
        print(f"wrote {args.json}")
    return 0


def _print(args: argparse.Namespace, thr: dict[str, Any], window: int, rows: list[dict[str, Any]],
           fw: int, mem_width: int, sc: dict[str, Any], eng: list[dict[str, Any]],
           vec: dict[str, Any]) -> None:  # fmt: skip
    print(f"predict throughput, torch (window {window}, overlap {window // 4}, {args.threads} "
          f"thread(s), {args.device}; small U-Net, {BANDS} bands, {CLASSES} classes)")  # fmt: skip
    print(f"{'raster':>11} {'windows':>7} {'raw fwd px/s':>13} {'GeoTIFF px/s':>13} "
          f"{'overhead':>8} {'overlap factor':>14}")  # fmt: skip
    print(f"{thr['raster']:>11} {thr['windows']:>7} {thr['raw_forward_px_per_s']:>13,.0f} "
          f"{thr['geotiff_path_px_per_s']:>13,.0f} {thr['overhead_ratio']:>7.2f}x "
          f"{thr['overlap_factor']:>13.2f}x")  # fmt: skip
    print(f"\nwhole scene, fast path (onnxruntime, window {fw} balanced to {sc['window_used']}, "
          f"overlap {ps_overlap()}, "
          f"{args.threads} threads)")  # fmt: skip
    print(f"{'raster':>13} {'seconds':>8} {'px/s':>11} {'peak RSS':>9} {'growth':>7} (MB)")
    print(f"{sc['raster']:>13} {sc['seconds']:>8.1f} {sc['px_per_s']:>11,.0f} "
          f"{sc['peak_rss_mb']:>9.1f} {sc['growth_mb']:>7.1f}   "
          f"{'under' if sc['under_2_minutes'] else 'OVER'} 2 minutes")  # fmt: skip
    print("\nengines on a crop of the scene (agreement of the class maps)")
    print(
        f"{'case':<22} {'engine':<12} {'prec':<5} {'window':>6} {'overlap':>7} {'s':>7} "
        f"{'px/s':>11} {'speed-up':>8} {'vs exact':>8} {'vs torch':>8} {'same win':>8}"
    )
    for r in eng:
        print(f"{r['case']:<22} {r['engine']:<12} {r['precision']:<5} {r['window_used']:>6} "
              f"{r['overlap']:>7} {r['seconds']:>7.2f} {r['px_per_s']:>11,.0f} "
              f"{r['speedup']:>7.2f}x {r['agreement_with_exact']:>8.5f} "
              f"{r['agreement_with_torch_default']:>8.5f} "
              f"{r['agreement_with_torch_same_windows']:>8.5f}")  # fmt: skip
    notes = [r["note"] for r in eng if r["note"]]
    if notes:
        print("; ".join(notes))
    print(
        "vs exact: against the reference, one window over the whole crop (no window "
        "borders); vs torch: torch with its default windows; same win: torch with the same "
        "windows (engine and precision alone)"
    )
    for v in (vec, vec["speckle"]):
        acc = "" if v["map_accuracy"] is None else f", accuracy {v['map_accuracy']:.4f}"
        print(f"\nvector output of the {v['map']} map ({v['source']}{acc}; the truth has "
              f"{v['truth_polygons']} regions)")  # fmt: skip
        print(f"{'case':<34} {'polygons':>8} {'agree map':>9} {'agree sieved':>12} "
              f"{'accuracy':>8} {'overlap/gap px':>14} {'s':>6}")  # fmt: skip
        for r in v["rows"]:
            print(f"{r['case']:<34} {r['polygons']:>8} {r['pixel_agreement']:>9.4f} "
                  f"{r['agreement_with_sieved']:>12.4f} {r['accuracy']:>8.4f} "
                  f"{r['overlap_px']:>6.2f}/{r['gap_px']:<7.2f} {r['seconds']:>6.2f}")  # fmt: skip
        print(
            f"{v['polygons_before']} -> {v['polygons_after']} polygons with the defaults "
            f"({v['reduction']:.1f}x fewer) at agreement {v['agreement_after']:.4f}; any map "
            f"with 10x fewer regions agrees on at most {v['best_agreement_at_10x']:.4f}"
        )
    print(f"\npeak memory of the fast path (VmHWM of a fresh process, reset after warm-up; "
          f"window budget = {fw} rows x {mem_width})")  # fmt: skip
    print(f"{'case':<20} {'raster':>11} {'RSS before':>10} {'peak RSS':>9} {'growth':>7} "
          f"{'in-memory need':>14} {'s':>6}   (MB)")  # fmt: skip
    for r in rows:
        print(f"{r['case']:<20} {r['raster']:>11} {r['rss_before_mb']:>10.1f} "
              f"{r['peak_rss_mb']:>9.1f} {r['growth_mb']:>7.1f} {r['in_memory_need_mb']:>14.1f} "
              f"{r['seconds']:>6.2f}")  # fmt: skip
    if not all(r["peak_was_reset"] for r in rows):
        print("note: /proc/self/clear_refs not writable; peaks include torch's import peak")
    growth = rows[2]["growth_mb"] - rows[1]["growth_mb"]
    print(f"4x raster vs budget raster: {growth:+.1f} MB of peak growth during prediction")


def ps_overlap() -> int:
    """The fast path's overlap (for the table header)."""
    from landcover.bench.predict.scene import FAST_OVERLAP

    return FAST_OVERLAP
