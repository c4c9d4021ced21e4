"""``landcover bench adapt-memory``: adapting on full-size tiles in bounded memory and time.

Five support tiles of 2000×2000 px (3 bands, 5 classes, smooth random structure) adapt a
bundle with the network, learner and tile size of ``configs/folder.yaml`` (read by
:func:`landcover.bench.regions.config_settings`, as the regions bench reads it; shipped: small
U-Net width 8, depth 3, stride 4, MAML++ with 3 inner steps, 256-px tiles). Cutting every
tile into crops gives thousands of them (5120 at 64 px);
before the crop pool all of them went into one inner step (8.5 GB for five 1817×2061 tiles,
issue 11). The pool keeps at most ``POOL_PIXELS`` network pixels of crops
(:func:`landcover.inference.adapt.crop_pool`; ``stride**2`` input pixels each), and the
guard tries several step counts on held-out support.

Each configuration runs in a fresh subprocess; its peak resident memory is ``ru_maxrss`` of
that process (tiles, model, adaptation, guard, all together) and its time the wall-clock
time of :func:`~landcover.inference.adapt.adapt_bundle`. The target is ≤ 2 GB and ≤ 60 s
on the 2-core machine. ``--budgets`` compares pixel budgets in the same run (a ratio:
memory grows with the budget, not with the tiles).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_NAME = "adapt-memory"
BENCH_HELP = "peak RSS and time of adapting on 5 tiles of 2000x2000 px (crop pool budget)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the bench."""
    parser.add_argument("--tiles", type=int, default=5, help="support tiles")
    parser.add_argument("--size", type=int, default=2000, help="tile side in pixels")
    parser.add_argument(
        "--budgets", default=None, help="comma-separated pixel budgets (default: the product's)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--json", default=None, metavar="FILE", help="write results as JSON")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """Build tiles and a bundle, adapt, report peak RSS and time (runs in a subprocess)."""
    import resource

    import torch

    from landcover.inference.adapt import adapt_bundle
    from landcover.inference.testing import tiny_bundle

    torch.set_num_threads(spec["threads"])
    g = torch.Generator().manual_seed(0)
    n, size, k = spec["tiles"], spec["size"], 5
    images, masks = [], []
    for _ in range(n):
        coarse = torch.randint(0, k, (1, 1, size // 100 + 1, size // 100 + 1), generator=g)
        mask = torch.nn.functional.interpolate(coarse.float(), scale_factor=100.0)[0, 0]
        mask = mask[:size, :size].long()
        img = torch.rand(3, size, size, generator=g) * 30 + mask[None].float() * 40
        images.append(img)
        masks.append(mask)
        del coarse
    model, learner, tile = spec["model"], spec["learner"], spec["tile"]
    bundle = tiny_bundle(3, k, learner="mamlpp", learner_options=learner, model_options=model,
                         tile_size=tile, mean=80.0, std=60.0)  # fmt: skip
    start = time.perf_counter()
    result = adapt_bundle(bundle, images, masks, max_pixels=spec["budget"])
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "tiles": n,
        "size": size,
        "budget_pixels": spec["budget"],
        "crops": result.crops,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "report": result.report(),
    }


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "landcover.cli", "bench", BENCH_NAME, "--child", json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"adaptation subprocess failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> int:
    """Run the bench, print a table, write JSON."""
    if args.child is not None:
        print(json.dumps(_child(json.loads(args.child))))
        return 0
    from landcover.inference.adapt import POOL_PIXELS

    budgets = [int(b) for b in args.budgets.split(",")] if args.budgets else [POOL_PIXELS]
    from landcover.bench.regions import config_settings

    settings = config_settings()  # configs/folder.yaml's model, as the regions bench reads it
    model, learner, tile = settings.model_options, settings.learner_options, settings.tile_size
    rows = []
    for budget in budgets:
        spec = {"tiles": args.tiles, "size": args.size, "budget": budget, "threads": args.threads,
                "model": model, "learner": learner, "tile": tile}  # fmt: skip
        print(f"adapting {args.tiles} tiles of {args.size}² px, pool budget {budget} px ...",
              file=sys.stderr, flush=True)  # fmt: skip
        rows.append(_measure(spec))
    print(f"\n{'budget px':>10} {'crops':>6} {'seconds':>8} {'peak RSS MB':>12} "
          f"{'steps kept/tried':>17} {'mIoU before→after':>18}")  # fmt: skip
    for r in rows:
        rep = r["report"]
        print(f"{r['budget_pixels']:>10} {r['crops']:>6} {r['seconds']:>8.1f} "
              f"{r['peak_rss_mb']:>12.0f} {rep['steps_kept']:>8}/{rep['steps_tried']:<8} "
              f"{rep['support_miou_before']:>8.3f}→{rep['support_miou_after']:.3f}")  # fmt: skip
    default = [r for r in rows if r["budget_pixels"] == POOL_PIXELS]
    target = bool(default) and all(r["peak_rss_mb"] <= 2048 and r["seconds"] <= 60 for r in default)
    print(f"\ntarget at the product's budget {POOL_PIXELS} px (<= 2048 MB and <= 60 s): "
          f"{'met' if target else 'NOT met' if default else 'not measured'}")  # fmt: skip
    payload = {
        "bench": BENCH_NAME,
        "model": model,
        "learner": {"name": "mamlpp", **learner},
        "tile_size": tile,
        "threads": args.threads,
        "rows": rows,
        "product_budget_pixels": POOL_PIXELS,
        "target_met": target,
    }
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(path)
        print(f"wrote {path}")
    return 0
