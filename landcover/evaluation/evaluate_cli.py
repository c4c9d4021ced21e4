r"""``landcover evaluate model.bundle [other.bundle ...] --regions DIR --shots 1,2,5,10``.

Few-shot evaluation of one or more model bundles on held-out regions: ``DIR`` is a dataset
folder (users' region folders, SEN12MS or DeepGlobe, detected from its content). For each
number of shots the same tasks are given to every bundle (paired comparison, the first
bundle against the others); the report (``report.md``, ``metrics.json``, plots) goes to
``--out``. ``--baselines unadapted,scratch,pretrain,rf`` adds baseline rows built from the
first bundle's architecture, without training dummy bundles (see
:mod:`landcover.evaluation.baseline_rows`; ``pretrain`` needs ``--pretrain-regions``)::

    landcover evaluate maml.bundle --regions held_out/ --baselines unadapted,scratch,pretrain \
        --pretrain-regions train_regions/ --val-regions val_regions/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from landcover.evaluation.baseline_rows import (
    BASELINES,
    PRETRAIN_NEEDS,
    baseline_methods,
    parse_baselines,
)
from landcover.evaluation.fewshot import Method, evaluate_fewshot
from landcover.evaluation.report import markdown_table, write_report
from landcover.inference.bundle import ModelBundle
from landcover.inference.errors import BundleError


def parse_shots(text: str) -> list[int]:
    """``"1,2,5,10"`` -> ``[1, 2, 5, 10]`` (positive integers)."""
    try:
        shots = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(
            f"--shots takes comma-separated integers like 1,2,5,10; got {text!r}"
        ) from None
    if not shots or min(shots) < 1:
        raise ValueError(f"--shots needs positive integers; got {text!r}")
    return shots


def check_compatible(bundles: dict[str, ModelBundle], names: list[str], bands: int) -> None:
    """The regions must have each bundle's band count and class names."""
    for label, b in bundles.items():
        b.check_bands(bands, source="regions")
        if list(b.class_names) != list(names):
            raise BundleError(
                f"bundle {label} predicts classes {list(b.class_names)} but the regions use "
                f"{list(names)}; evaluate on regions with the bundle's class scheme"
            )


def run(args: argparse.Namespace) -> int:
    """Evaluate the bundles and write the report."""
    from landcover.geo.datasets import load_regions
    from landcover.geo.normalize import BandStats
    from landcover.tasks.region import RegionTaskSampler

    shots = parse_shots(args.shots)
    if args.tile_size is not None and args.tile_size < 1:
        raise ValueError(
            f"--tile-size is the crop size in pixels, a positive number; got {args.tile_size}; "
            "leave it out to use the bundle's own tile size"
        )
    baselines = parse_baselines(args.baselines)
    if "pretrain" in baselines and not args.pretrain_regions:
        raise ValueError(PRETRAIN_NEEDS)
    bundles = {Path(p).stem: ModelBundle.load(p) for p in args.bundles}
    if len(bundles) != len(args.bundles):
        raise ValueError("give bundles with distinct file names (they label the report rows)")
    regions = load_regions(args.regions, kind=args.kind)
    first = next(iter(bundles.values()))
    check_compatible(bundles, list(regions[0].scheme.names), len(regions[0].band_names))
    stats = BandStats(tuple(first.mean), tuple(first.std), tuple(first.bands))
    sampler = RegionTaskSampler(
        regions,
        shots=max(shots),
        query=args.query,
        tile_size=args.tile_size or first.tile_size,
        stats=stats,
        ignore_index=first.ignore_index,
        seed=args.seed,
    )
    methods = {
        label: Method(b.build_learner(), args.steps if args.steps is not None else b.inner_steps)
        for label, b in bundles.items()
    }
    setup: dict[str, str] = {}
    if baselines:

        def read(path: str | None) -> list | None:
            return None if path is None else load_regions(path, kind=args.kind)

        extra, setup = baseline_methods(
            baselines, first, tile_size=args.tile_size or first.tile_size,
            pretrain_regions=read(args.pretrain_regions), val_regions=read(args.val_regions),
            pretrain_steps=args.pretrain_steps, finetune_lr=args.finetune_lr,
            finetune_steps=args.finetune_steps, seed=args.seed,
            tune_shots=sorted({min(shots), min(max(shots), 5)}),
            tuning_tasks=args.tuning_tasks,
        )  # fmt: skip
        clash = set(extra) & set(methods)
        if clash:
            raise ValueError(f"bundle names {sorted(clash)} clash with baseline rows; rename")
        methods.update(extra)
    result = evaluate_fewshot(
        methods,
        lambda k, i: sampler.task(i, shots=k),
        num_classes=len(first.class_names),
        shots=shots,
        tasks_per_shot=args.tasks,
        ignore_index=first.ignore_index,
    )
    result.meta.update(
        regions=[r.name for r in regions], bundles=list(args.bundles), baselines=setup
    )
    scheme = regions[0].scheme
    paths = write_report(
        result,
        args.out,
        class_names=scheme.names,
        colors=scheme.colors,
        title=f"Few-shot evaluation on {args.regions}",
        notes=[
            f"Regions: {', '.join(r.name for r in regions)}; {args.tasks} tasks per shot "
            f"count with {args.query} query tiles; every bundle on the same tasks.",
            *[f"Baseline {name}: {how}." for name, how in setup.items()],
            *split_note(first.info.get("regions")),
        ],
        ignore_index=first.ignore_index,
    )
    print(markdown_table(result))
    print(f"\nreport: {paths['report']}")
    return 0


def split_note(regions: Any) -> list[str]:
    """The report's line on the region split the first bundle was trained with."""
    if not isinstance(regions, dict):
        return []
    parts = [f"{k} {', '.join(map(str, regions.get(k) or [])) or 'none'}"
             for k in ("train", "val", "test")]  # fmt: skip
    return [f"Training split of the first bundle: {'; '.join(parts)}."]


def main(argv: list[str]) -> int:
    """Entry point of ``landcover evaluate``."""
    parser = argparse.ArgumentParser(prog="landcover evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", help="model bundle(s); the first is compared")
    parser.add_argument("--regions", required=True, help="folder of held-out regions")
    parser.add_argument("--kind", default="auto", help="dataset format (auto-detected)")
    parser.add_argument("--shots", default="1,2,5,10", help="comma-separated shot counts")
    parser.add_argument("--tasks", type=int, default=100, help="tasks per shot count")
    parser.add_argument("--query", type=int, default=4, help="query tiles per task")
    parser.add_argument("--tile-size", type=int, default=None, help="crop size (bundle's)")
    parser.add_argument("--steps", type=int, default=None, help="inner steps (bundle's)")
    parser.add_argument("--seed", type=int, default=0, help="task sampling seed")
    parser.add_argument("--out", type=Path, default=Path("runs/evaluate"), help="report folder")
    parser.add_argument(
        "--baselines", default=None, help=f"comma-separated baseline rows: {', '.join(BASELINES)}"
    )
    parser.add_argument(
        "--pretrain-regions", default=None, help="regions to pretrain the pretrain baseline on"
    )
    parser.add_argument(
        "--pretrain-steps",
        type=int,
        default=250,
        help="outer steps of the pretrain baseline (as the meta-training)",
    )
    parser.add_argument(
        "--val-regions",
        default=None,
        help="regions to choose the baselines' fine-tuning rate and steps on",
    )
    parser.add_argument(
        "--tuning-tasks", type=int, default=4, help="validation tasks per shot count for that"
    )
    parser.add_argument(
        "--finetune-lr", type=float, default=0.1, help="fine-tuning SGD rate without --val-regions"
    )
    parser.add_argument("--finetune-steps", type=int, default=30,
                        help="fine-tuning steps without --val-regions")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (BundleError, ValueError, KeyError, FileNotFoundError) as err:  # GeoDataError too
        print(f"landcover evaluate: {err}", file=sys.stderr)
        return 2
