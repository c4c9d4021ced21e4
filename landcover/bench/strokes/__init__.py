"""``landcover bench strokes``: adapting from painted strokes against full masks, real imagery.

The web page lets an analyst paint a few strokes per class instead of drawing full masks.
This benchmark measures what that costs in map quality, on the Dubai aerial tiles
(``../shared/data/dubai-aerial``: 4 areas of the city, one region each, 9 labeled images
per region, 6 classes with "unlabeled").

For every held-out region (leave-one-region-out over ``--folds``), MAML++ (Antoniou et al.,
"How to train your MAML", ICLR 2019) on a small U-Net is meta-trained on the other regions
twice: once with full-mask support sets, once with *stroke* support sets drawn from the
full masks (:mod:`landcover.tasks.sparse`, ScribbleSup-style strokes). Each is then
evaluated on tasks of the held-out region, adapting from

* nothing (the meta-learned initialisation),
* full masks of the support tiles,
* strokes drawn from those masks (about 2–5 % of the pixels labeled),
* points (10 per class),

and scored by mIoU on the query tiles' full masks. Prints a table, writes JSON and a PNG.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from landcover.evaluation.metrics import mean_interval, segmentation_scores
from landcover.evaluation.report import atomic_write_text
from landcover.geo.classes import IGNORE_INDEX, ClassScheme
from landcover.geo.normalize import BandStats
from landcover.geo.region import Region, in_memory_region
from landcover.meta.registry import build_learner
from landcover.models import build_model
from landcover.tasks.region import RegionTaskSampler
from landcover.tasks.sparse import SparseLabels, labeled_fraction, sparsify

BENCH_NAME = "strokes"
BENCH_HELP = "mIoU adapting from painted strokes vs full masks (Dubai aerial tiles)"

#: The colours actually found in the Dubai masks (the shipped classes.json is wrong).
DUBAI = ClassScheme(
    names=("building", "land", "road", "vegetation", "water"),
    colors=((60, 16, 152), (132, 41, 246), (110, 193, 228), (254, 221, 58), (226, 169, 41)),
    encoding="color",
    ignore_value=(155, 155, 155),
)
ADAPT_ROWS = ("none", "full masks", "strokes", "points")
STROKES = SparseLabels(mode="strokes", per_class=2, length=0.3, width=5)
POINTS = SparseLabels(mode="points", per_class=10)
MAMLPP = {"steps": 3, "inner_lr": 0.1, "bn": "transductive"}


def load_dubai(root: Path, scale: float) -> list[Region]:
    """The Dubai tiles as in-memory regions (RGB in 0..1, masks as class indices)."""
    regions = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images, masks = [], []
        for img_path in sorted((folder / "images").glob("*.jpg")):
            img = Image.open(img_path).convert("RGB")
            mask = Image.open(folder / "masks" / f"{img_path.stem}.png").convert("RGB")
            size = (round(img.width * scale), round(img.height * scale))
            img, mask = img.resize(size, Image.BILINEAR), mask.resize(size, Image.NEAREST)
            raw = np.asarray(mask).copy()
            raw[(raw == 0).all(axis=-1)] = (155, 155, 155)  # Tile 3's black = unlabeled
            images.append(torch.from_numpy(np.asarray(img).transpose(2, 0, 1) / 255.0).float())
            masks.append(torch.from_numpy(DUBAI.encode(raw, img_path)))
        h = min(m.shape[0] for m in masks)
        w = min(m.shape[1] for m in masks)
        regions.append(
            in_memory_region(
                folder.name,
                torch.stack([x[:, :h, :w] for x in images]),
                torch.stack([m[:h, :w] for m in masks]),
                DUBAI,
                ("red", "green", "blue"),
            )
        )
    return regions


def band_stats(regions: list[Region]) -> BandStats:
    """Per-band mean and std over the training regions."""
    x = torch.cat([r.stack()[0].transpose(0, 1).flatten(1) for r in regions], dim=1)
    return BandStats(tuple(x.mean(1).tolist()), tuple(x.std(1).tolist()), ("red", "green", "blue"))


def meta_train(
    train: list[Region], stats: BandStats, args: argparse.Namespace, sparse: SparseLabels | None
) -> Any:
    """MAML++ on a small U-Net, meta-trained on ``train`` with full or stroke supports."""
    torch.manual_seed(args.seed)
    model = build_model("small_unet", 3, DUBAI.num_classes, width=args.width, depth=3, norm="batch")
    loss = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    learner = build_learner("mamlpp", model, loss, **MAMLPP)
    sampler = RegionTaskSampler(
        train, shots=[1, args.shots], query=args.query, tile_size=args.tile, stats=stats,
        augment="flips", seed=args.seed, sparse=sparse, min_support_classes=2,
    )  # fmt: skip
    opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
    learner.train()
    index = 0
    label = "strokes" if sparse else "full masks"
    for step in tqdm(range(args.meta_steps), desc=f"meta-train ({label})", leave=False):
        learner.on_epoch_start(step // 25)
        opt.zero_grad()
        tasks = sampler.tasks(args.meta_batch, start=index)
        index += args.meta_batch
        learner.meta_backward(tasks)
        opt.step()
    return learner


def evaluate(learner: Any, region: Region, stats: BandStats, args: argparse.Namespace) -> dict:
    """MIoU on the query tiles of ``region`` after adapting from each kind of support."""
    sampler = RegionTaskSampler(
        [region], shots=args.shots, query=args.query, tile_size=args.tile, stats=stats,
        seed=10_000 + args.seed, min_support_classes=2,
    )  # fmt: skip
    scores: dict[str, list[float]] = {row: [] for row in ADAPT_ROWS}
    labeled: dict[str, list[float]] = {row: [] for row in ADAPT_ROWS}
    learner.eval()
    for i in tqdm(range(args.tasks), desc=f"evaluate {region.name}", leave=False):
        task = sampler.task(i)
        rng = np.random.default_rng([args.seed, i])
        supports = {
            "none": None,
            "full masks": task.support_y,
            "strokes": torch.stack([sparsify(y, STROKES, rng) for y in task.support_y]),
            "points": torch.stack([sparsify(y, POINTS, rng) for y in task.support_y]),
        }
        for row, sy in supports.items():
            if sy is None:
                state = learner.adapt(task.support_x, task.support_y, steps=0)
            else:
                state = learner.adapt(task.support_x, sy, steps=MAMLPP["steps"])
                labeled[row].append(labeled_fraction(sy))
            with torch.no_grad():
                pred = learner.predict(state, task.query_x).argmax(1)
            s = segmentation_scores(pred, task.query_y, DUBAI.num_classes)["miou"]
            if not math.isnan(s):
                scores[row].append(s)
    out = {}
    for row in ADAPT_ROWS:
        ci = mean_interval(scores[row])
        out[row] = {
            "miou": ci.mean,
            "ci95": [ci.low, ci.high],
            "tasks": len(scores[row]),
            "labeled_fraction": float(np.mean(labeled[row])) if labeled[row] else 0.0,
        }
    return out


def save_bundle(learner: Any, stats: BandStats, args: argparse.Namespace) -> Path:
    """Save a meta-trained learner as a bundle the service serves (raw 0..255 RGB input)."""
    from landcover.inference.bundle import ModelBundle

    args.bundle.parent.mkdir(parents=True, exist_ok=True)
    return ModelBundle.from_learner(
        learner,
        bands=["red", "green", "blue"],
        mean=[255 * m for m in stats.mean],
        std=[255 * s for s in stats.std],
        classes=DUBAI,
        tile_size=args.tile,
        inner_steps=MAMLPP["steps"],
        info={"bench": "strokes", "scale": args.scale, "meta_trained_on": "strokes"},
    ).save(args.bundle)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``landcover bench strokes``."""
    p.add_argument("--root", type=Path, default=Path("../shared/data/dubai-aerial"))
    p.add_argument("--folds", default="Tile 2,Tile 4", help="held-out regions, comma-separated")
    p.add_argument("--scale", type=float, default=0.25, help="image downscale before cropping")
    p.add_argument("--tile", type=int, default=64, help="crop size (pixels)")
    p.add_argument("--shots", type=int, default=3, help="support tiles per task")
    p.add_argument("--query", type=int, default=3, help="query tiles per task")
    p.add_argument("--width", type=int, default=8, help="U-Net base width")
    p.add_argument("--meta-steps", type=int, default=60, help="meta-training steps")
    p.add_argument("--meta-batch", type=int, default=3, help="tasks per meta-step")
    p.add_argument("--tasks", type=int, default=16, help="evaluation tasks per fold")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--json", type=Path, default=Path("docs/results/strokes.json"))
    p.add_argument("--plot", type=Path, default=Path("docs/img/strokes.png"))
    p.add_argument(
        "--bundle",
        type=Path,
        default=Path("runs/strokes/dubai-strokes.bundle"),
        help="where to save the last fold's stroke-meta-trained model (for the web page)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, write JSON and PNG."""
    from landcover.bench.strokes.report import plot, table

    if not args.root.is_dir():
        print(f"landcover bench strokes: no data at {args.root}; pass --root DUBAI_FOLDER")
        return 2
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    regions = {r.name: r for r in load_dubai(args.root, args.scale)}
    folds = [f.strip() for f in args.folds.split(",") if f.strip()]
    unknown = [f for f in folds if f not in regions]
    if unknown:
        print(f"landcover bench strokes: unknown regions {unknown}; have {sorted(regions)}")
        return 2
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}

    def summary() -> dict[str, Any]:
        return {
            "bench": BENCH_NAME,
            "data": str(args.root),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "strokes": STROKES.__dict__,
            "points": POINTS.__dict__,
            "results": results,
            "timings_s": timings,
            "total_s": time.perf_counter() - t0,
            "machine": {"platform": platform.platform(), "threads": args.threads},
        }

    for fold in folds:
        train = [r for name, r in regions.items() if name != fold]
        stats = band_stats(train)
        for label, sparse in (("full masks", None), ("strokes", STROKES)):
            t = time.perf_counter()
            learner = meta_train(train, stats, args, sparse)
            timings[f"{fold} / meta-train {label}"] = time.perf_counter() - t
            t = time.perf_counter()
            results.setdefault(fold, {})[label] = evaluate(learner, regions[fold], stats, args)
            timings[f"{fold} / evaluate {label}"] = time.perf_counter() - t
            if sparse is not None and fold == folds[-1]:
                save_bundle(learner, stats, args)
            took = timings[f"{fold} / meta-train {label}"]
            print(f"{fold}: meta-trained with {label} in {took:.0f} s")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(summary(), indent=2))  # partial results
    print(table(results))
    final = summary()
    atomic_write_text(args.json, json.dumps(final, indent=2))
    plot(results, args.plot)
    print(f"wrote {args.json} and {args.plot} ({final['total_s']:.0f} s)")
    return 0
