"""``landcover adapt model.bundle --support DIR [--steps N] -o adapted.bundle``."""

from __future__ import annotations

import argparse
import json
import sys

from landcover.geo.errors import GeoDataError
from landcover.inference.adapt import adapt_folder
from landcover.inference.bundle import ModelBundle
from landcover.inference.errors import BundleError


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = argparse.ArgumentParser(
        prog="landcover adapt",
        description="Adapt a meta-learned model bundle to a region from a few labeled tiles "
        "and write an adapted bundle for `landcover predict`.",
    )
    p.add_argument("bundle", help="meta-learned model bundle (from `landcover export`)")
    p.add_argument(
        "--support",
        required=True,
        metavar="DIR",
        help="region folder: images/, masks/ (pairs by file stem), classes.yaml|json",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="inner adaptation steps (default: the bundle's / learner's)",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="ADAPTED", help="where to write the adapted bundle"
    )
    p.add_argument(
        "--no-guard",
        action="store_true",
        help="run exactly --steps steps; by default the steps are chosen on held-out support "
        "and a state worse than no adaptation is never kept",
    )
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p  # fmt: skip


def main(argv: list[str]) -> int:
    """Run the command; returns the exit status (2 for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        bundle = ModelBundle.load(args.bundle)
        print(f"adapting {args.bundle} ({bundle.learner['name']}, {bundle.model['arch']}) "
              f"on {args.support} ...", file=sys.stderr)  # fmt: skip
        result = adapt_folder(
            bundle, args.support, args.steps, device=args.device, guard=not args.no_guard
        )
        result.bundle.save(args.output)
    except (BundleError, GeoDataError, ValueError) as err:
        print(f"landcover adapt: error: {err}", file=sys.stderr)
        return 2
    summary = {**result.summary(), "output": args.output}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        report = result.report()
        print(
            f"support tiles {result.tiles} ({result.crops} crops of {bundle.tile_size} px), "
            f"steps kept {report['steps_kept']} of {report['steps_tried']} tried"
            + (
                f" (chosen on {report['held_out_tiles']} held-out tile(s))"
                if report["held_out_tiles"]
                else " (chosen on held-out pixel blocks)"
                if result.guard is not None
                else " (unguarded)"
            )
        )
        print(
            f"support mIoU  before {result.miou_before:.3f}  after {result.miou_after:.3f}  "
            f"({result.seconds:.2f} s)"
        )
        print(f"wrote {args.output}")  # fmt: skip
    return 0
