"""``landcover data``: synthesize, inspect and describe datasets.

Sub-commands::

    landcover data synth --out DIR [--regions N] [--seed S] [--<knob> VALUE ...] [--force]
    landcover data scene --out DIR [--seed S] [--size PX] [--drift D] [--force]
                         (a 5-band float32 scene, -99999 nodata, values 1..7, quadrant regions)
    landcover data inspect DIR [--kind auto|folder|sen12ms|deepglobe] [--plot PNG]
    landcover data stats DIR --out stats.json     (per-band normalisation statistics)

Every knob of :class:`landcover.geo.synthetic.SynthConfig` is a ``synth`` flag (underscores
become dashes, e.g. ``--signature-shift 1.0``; ``--texture-scale 1.5 6``).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
from pathlib import Path

from landcover.geo.errors import GeoDataError
from landcover.geo.synthetic import SynthConfig


def _knob_help() -> dict[str, str]:
    """One-line help per knob, from the ``Attributes:`` section of SynthConfig's docstring."""
    doc = (SynthConfig.__doc__ or "").split("Attributes:", 1)[-1]
    out: dict[str, str] = {}
    for name, text in re.findall(r"^\s{8}(\w+): (.+?)(?=^\s{8}\w+: |\Z)", doc, re.M | re.S):
        out[name] = " ".join(text.split())
    return out


def _synth_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write synthetic regions in the users' folder format")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    defaults = SynthConfig()
    helps = _knob_help()
    for f in dataclasses.fields(SynthConfig):
        value = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, tuple):
            text = f"{helps.get(f.name, '')} (default {value[0]} {value[1]})"
            p.add_argument(
                flag, type=float, nargs=2, default=value, metavar=("LO", "HI"), help=text
            )
        else:
            p.add_argument(
                flag,
                type=type(value),
                default=value,
                help=f"{helps.get(f.name, '')} (default {value})",
            )


def _run_synth(args: argparse.Namespace) -> int:
    knobs = {f.name: getattr(args, f.name) for f in dataclasses.fields(SynthConfig)}
    knobs["texture_scale"] = tuple(knobs["texture_scale"])
    config = SynthConfig(**knobs)
    from landcover.geo.synthetic import write_synthetic

    start = time.perf_counter()
    folders = write_synthetic(args.out, config, progress=not args.quiet, overwrite=args.force)
    print(
        f"wrote {len(folders)} regions × {config.tiles_per_region} tiles "
        f"({config.tile_size}×{config.tile_size} px, {config.bands} bands) to {args.out} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0


def _scene_parser(sub: argparse._SubParsersAction) -> None:
    from landcover.geo.scene import SceneConfig

    p = sub.add_parser(
        "scene",
        help="write a 5-band float32 scene with -99999 nodata, its reference and its four "
        "quadrants as region folders of tiles",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    d = SceneConfig()
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed (default {d.seed})")
    p.add_argument("--size", type=int, default=d.size, help=f"scene side in px ({d.size})")
    p.add_argument("--tile-size", type=int, default=d.tile_size, help=f"tile side ({d.tile_size})")
    p.add_argument(
        "--drift", type=float, default=d.drift,
        help=f"std of each class's log gain across the scene (default {d.drift})",
    )  # fmt: skip


def _run_scene(args: argparse.Namespace) -> int:
    from landcover.geo.scene import SceneConfig, write_scene_dataset

    start = time.perf_counter()
    config = SceneConfig(size=args.size, tile_size=args.tile_size, seed=args.seed,
                         drift=args.drift)  # fmt: skip
    paths = write_scene_dataset(args.out, config, overwrite=args.force)
    print(
        f"wrote {paths['scene']} ({config.size}×{config.size} px, 5 bands float32, nodata "
        f"{config.nodata:g}), {paths['reference']} and quadrant regions of "
        f"{config.tile_size}-px tiles in {paths['regions']} in "
        f"{time.perf_counter() - start:.1f} s"
    )
    return 0


def _run_inspect(args: argparse.Namespace) -> int:
    from landcover.geo.datasets import detect_kind, load_regions
    from landcover.geo.inspect import plot_regions, print_problems, print_summary, summarize

    kind = detect_kind(args.dir) if args.kind == "auto" else args.kind
    options = {}
    if args.classes is not None:
        if kind != "folder":
            raise ValueError(f"--classes applies to region folders, not to {kind} datasets")
        options["classes"] = args.classes
    if kind == "folder":
        from landcover.geo.folder import find_problems

        problems = find_problems(args.dir, classes=args.classes)
        if problems:
            print_problems(problems)
            hint = ""
            if any("class file" in str(p) for p in problems) and args.classes is None:
                hint = " (a dataset you cannot edit can take a class file with --classes FILE)"
            print(
                f"landcover data inspect: {len(problems)} problem(s) in {args.dir}{hint}",
                file=sys.stderr,
            )
            return 2
    regions = load_regions(args.dir, kind=kind, **options)
    print_summary([summarize(r) for r in regions], title=f"{args.dir} ({len(regions)} regions)")
    if kind == "folder":
        from landcover.geo.grid_check import grid_mismatches

        off = grid_mismatches(args.dir)
        for mask, what in off:
            print(f"landcover data inspect: warning: {mask}: {what}", file=sys.stderr)
        if off:
            print(f"landcover data inspect: warning: {len({m for m, _ in off})} mask(s) not on "
                  "their image's grid: masks are read pixel for pixel with their images, so "
                  "reproject them onto the image grid (e.g. gdalwarp with the image's CRS, "
                  "-tr and -te) or check that the label is right", file=sys.stderr)  # fmt: skip
    if args.plot is not None:
        path = plot_regions(regions, args.plot)
        print(f"wrote {path}")
    return 0


def _run_stats(args: argparse.Namespace) -> int:
    from landcover.geo.datasets import load_regions
    from landcover.geo.normalize import compute_band_stats

    options = {"classes": args.classes} if args.classes is not None else {}
    stats = compute_band_stats(load_regions(args.dir, kind=args.kind, **options))
    stats.save(args.out)
    for name, m, s in zip(stats.band_names, stats.mean, stats.std):
        print(f"{name:>8}  mean {m:12.3f}  std {s:12.3f}")
    print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``landcover data`` argument parser."""
    parser = argparse.ArgumentParser(prog="landcover data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _synth_parser(sub)
    _scene_parser(sub)
    kinds = ("auto", "folder", "sen12ms", "deepglobe")
    p = sub.add_parser("inspect", help="regions, tiles, sizes, bands, CRS, class histograms")
    p.add_argument("dir", type=Path)
    p.add_argument("--kind", choices=kinds, default="auto", help="dataset format (default: detect)")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG of one tile per region")
    p.add_argument(
        "--classes",
        type=Path,
        default=None,
        help="class file to use instead of the folders' own (e.g. a read-only dataset)",
    )
    p = sub.add_parser("stats", help="per-band normalisation statistics as JSON")
    p.add_argument("dir", type=Path)
    p.add_argument("--kind", choices=kinds, default="auto")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--classes", type=Path, default=None, help="class file to use instead")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``landcover data``; returns the exit status (2 on bad input, with the reason)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    run = {"synth": _run_synth, "scene": _run_scene, "inspect": _run_inspect, "stats": _run_stats}[
        args.command
    ]
    try:
        return run(args)
    except (GeoDataError, FileExistsError, ValueError, KeyError) as err:
        print(f"landcover data {args.command}: error: {err}", file=sys.stderr)
        return 2
