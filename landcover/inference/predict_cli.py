"""``landcover predict BUNDLE IN.tif OUT.tif``: segment a raster (``--help`` for options).

The class map holds the class file's values (``--class-values index``: the class indices)
and is written with a QGIS style (``OUT.qml``) and GDAL category names
(``OUT.tif.aux.xml``) next to it unless ``--no-style``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from landcover.device import check_device
from landcover.geo.errors import GeoDataError
from landcover.geo.map_values import CLASS_VALUES
from landcover.inference.bundle import ModelBundle
from landcover.inference.errors import BundleError
from landcover.inference.predict import ENGINES, NODATA_CLASS, Predictor, default_window
from landcover.inference.predict_raster import predict_raster
from landcover.inference.vectorize import VectorOptions

#: Window and overlap of ``--engine onnxruntime`` when not given (the fast scene path).
FAST_WINDOW, FAST_OVERLAP = 704, 80


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = argparse.ArgumentParser(
        prog="landcover predict",
        description="Segment a raster of any size with a model bundle: overlapping windows "
        "blended smoothly, streamed strip by strip; CRS, transform and nodata are kept.",
    )
    p.add_argument("bundle", help="adapted bundle (from `landcover adapt`)")
    p.add_argument("input", help="input raster with the bundle's bands")
    p.add_argument("output", help="output class map GeoTIFF (uint8, colour table, nodata 255)")
    p.add_argument(
        "--probabilities",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="also write float32 per-class probabilities (default path: "
        "OUTPUT stem + '_probabilities.tif')",
    )
    p.add_argument("--cog", action="store_true", help="write Cloud-Optimized GeoTIFFs")
    p.add_argument(
        "--geojson",
        default=None,
        metavar="PATH",
        help="also write generalised polygons (GeoJSON, WGS 84; a raster without CRS: its "
        "own coordinates, as QGIS places it)",
    )
    p.add_argument(
        "--gpkg",
        default=None,
        metavar="PATH",
        help="also write generalised polygons as a GeoPackage (the raster's CRS)",
    )
    p.add_argument(
        "--min-area",
        type=float,
        default=16,
        metavar="N",
        help="minimum mapping unit of the polygons in pixels (default 16; 0 keeps every "
        "pixel region): smaller regions merge into neighbours (GDAL sieve at 2, 4, ... N px) "
        "in the polygons only, the raster map is not changed",
    )
    p.add_argument(
        "--min-area-m2",
        type=float,
        default=None,
        metavar="M2",
        help="minimum mapping unit in square metres instead (projected CRS)",
    )
    p.add_argument(
        "--simplify",
        type=float,
        default=1.0,
        metavar="PX",
        help="simplification tolerance of the polygons in pixels (default 1; 0 keeps "
        "the pixel outlines)",
    )
    p.add_argument(
        "--no-style",
        action="store_true",
        help="do not write the QGIS style (.qml) and GDAL category names (.aux.xml)",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="torch",
        help="torch (the reference) or onnxruntime (the network exported to ONNX, "
        f"optimised; defaults to --window {FAST_WINDOW} --overlap {FAST_OVERLAP}, except "
        "for models that normalise over each window (transductive BatchNorm, GroupNorm): "
        "torch's windows, the same map)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        default="fp32",
        help="onnxruntime: int8 quantises the network, calibrated on the input raster, and "
        "keeps it only if its class map agrees with fp32 on >= 99.9%% of the calibration "
        "pixels (about 2x faster on CPUs with VNNI)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads of the engine (default: all)"
    )
    p.add_argument(
        "--window",
        type=int,
        default=None,
        help="window size in pixels (default: max(tile size, 256); 1024 for models on a "
        "pretrained encoder)",
    )
    p.add_argument(
        "--overlap",
        type=int,
        default=None,
        help="overlap of neighbouring windows (default: window // 4)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="windows per forward pass (default 4; 1 with --engine onnxruntime)",
    )
    p.add_argument(
        "--class-values",
        choices=CLASS_VALUES,
        default="file",
        help="what the class map holds: 'file' (default) the class file's values (e.g. 1..7, "
        "with the colours and names keyed by them, also in the styles and polygons' class_id); "
        "'index' the class indices 0..n-1",
    )
    p.add_argument(
        "--map-nodata",
        type=int,
        default=NODATA_CLASS,
        metavar="V",
        help=f"the class map's value where the input has no data (default {NODATA_CLASS}); "
        "no class may take it. A value below 16, e.g. 0 for classes 1..7, packs the map into "
        "4 bits or fewer, so that its colour table - the legend QGIS shows for the GeoTIFF "
        "without its .qml - lists 16 values or fewer instead of 256",
    )
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p  # fmt: skip


def _check_paths_and_device(args: argparse.Namespace, probs: str | None) -> str | None:
    """What is wrong with the windows, output paths or device, or ``None``."""
    if args.window is not None and args.overlap is not None and args.overlap >= args.window:
        return f"--overlap ({args.overlap}) must be smaller than --window ({args.window})"
    named = [("output", args.output), ("--probabilities", probs), ("--geojson", args.geojson),
             ("--gpkg", args.gpkg)]  # fmt: skip
    seen = {Path(args.input).resolve(): "the input"}
    for flag, path in named:
        if path is None:
            continue
        key = Path(path).resolve()
        if key in seen:
            return f"{flag} {path} is also {seen[key]}; give each output its own path"
        seen[key] = "the output" if flag == "output" else f"the {flag} path"
    try:
        check_device(args.device)
    except ValueError as err:
        return str(err)
    return None


def main(argv: list[str]) -> int:
    """Run the command; returns the exit status (2 for bad input)."""
    args = build_parser().parse_args(argv)
    probs = args.probabilities
    if probs == "":
        out = Path(args.output)
        probs = str(out.with_name(f"{out.stem}_probabilities{out.suffix or '.tif'}"))
    for name in ("window", "overlap", "batch_size", "threads"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "overlap" else 1):
            print(f"landcover predict: error: --{name.replace('_', '-')} must be positive; "
                  f"got {value}", file=sys.stderr)  # fmt: skip
            return 2
    problem = _check_paths_and_device(args, probs)
    if problem:
        print(f"landcover predict: error: {problem}", file=sys.stderr)
        return 2
    if args.batch_size is None:
        args.batch_size = 1 if args.engine == "onnxruntime" else 4
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    try:
        vector = VectorOptions(int(args.min_area), args.min_area_m2, args.simplify)
        bundle = ModelBundle.load(args.bundle)
        predictor = Predictor.from_bundle(bundle, args.device, engine=args.engine)
        if bundle.kind != "adapted":  # said once the model is accepted (Proto-MAML is not)
            print("landcover predict: note: this bundle is not adapted; predicting with the "
                  "meta-learned weights (run `landcover adapt` first for a region)",
                  file=sys.stderr)  # fmt: skip
        # The fast windows, unless a window's output depends on its size (normalisation
        # over the window's own pixels: transductive BatchNorm, GroupNorm): then both
        # engines use the same windows and give the same map.
        # Models on a frozen pretrained encoder keep their larger default windows (their
        # deep features see far past a small window's border).
        fast_ok = not predictor.window_dependent and default_window(bundle) <= FAST_WINDOW
        if args.engine == "onnxruntime" and args.window is None and fast_ok:
            args.window = FAST_WINDOW
            args.overlap = FAST_OVERLAP if args.overlap is None else args.overlap
        if args.precision == "int8":
            note = predictor.use_int8(args.input)
            if not args.json:
                print(f"landcover predict: {note}", file=sys.stderr)
        result = predict_raster(
            predictor, args.input, args.output, window=args.window, overlap=args.overlap,
            probabilities=probs, geojson=args.geojson, gpkg=args.gpkg, vector=vector,
            style=not args.no_style, cog=args.cog, batch_size=args.batch_size,
            balance=args.engine == "onnxruntime" and args.window == FAST_WINDOW,
            progress=not args.quiet, class_values=args.class_values, nodata=args.map_nodata,
        )  # fmt: skip
    except (BundleError, GeoDataError, ValueError) as err:
        print(f"landcover predict: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # an output folder that cannot be created or written
        where = f": {err.filename}" if err.filename else ""
        print(f"landcover predict: error: cannot write the outputs ({err.strerror or err}"
              f"{where}); choose a writable output path", file=sys.stderr)  # fmt: skip
        return 2
    summary = {
        "output": str(result.classes_path),
        "probabilities": str(result.probabilities_path) if result.probabilities_path else None,
        "geojson": str(result.geojson_path) if result.geojson_path else None,
        "gpkg": str(result.info["gpkg_path"]) if result.info.get("gpkg_path") else None,
        "style": result.info.get("sidecars", []),
        "engine": args.engine,
        "precision": predictor.precision,
        "class_values": result.info["class_values"],
        "nodata": result.info["nodata"],
        "width": result.width,
        "height": result.height,
        "windows": result.windows,
        "seconds": round(result.seconds, 3),
        "pixels_per_second": round(result.pixels_per_second, 1),
    }
    for note in result.info.get("notes", []):
        print(f"landcover predict: note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key in ("output", "probabilities", "geojson", "gpkg"):
            if summary[key]:
                print(f"wrote {summary[key]}")
        values = ", ".join(f"{v} {n}" for n, v in summary["class_values"].items())
        print(f"map values: {values}, {summary['nodata']} nodata")
        print(f"{result.width}x{result.height} px, {result.windows} windows, "
              f"{result.seconds:.2f} s ({result.pixels_per_second:,.0f} px/s)")  # fmt: skip
    return 0
