r"""``landcover bench regions ROOT``: does meta-learning pay on *your* regions?

Leave-one-region-out cross-validation (``--folds k`` for k folds with more regions) over a
users' dataset (region folders, or any format ``landcover data inspect`` reads): in each
fold MAML++, pretrain+finetune, scratch and the masked-prototype head are trained on the
same tiles for the same outer steps, the baselines' fine-tuning rate and steps are tuned on
a validation region, and every method is scored on the same test tasks at 1 / 2 / 5 / 10
shots, next to the unadapted meta-model (see :mod:`landcover.bench.regions.core`). Folds
and seeds are pooled task by task, so every comparison stays paired.

Writes into ``--out``: ``report.md`` (tables with 95% intervals, MAML++ minus each baseline,
per fold and per seed), ``metrics.json`` (per-task scores; the pooled margins under
``paired_miou``), ``miou_vs_shots.png`` and ``maps.png`` (image, truth, each method);
with ``--export``, each fold's MAML++ model as ``bundles/seed{S}_fold{F}.bundle`` (to adapt
to the held-out region and map a whole scene with ``landcover adapt`` / ``predict``).

Model settings come from a LightningCLI config (``--config``, default
``configs/folder.yaml`` when present): ``model.learner_options``, ``model.arch``,
``model.model_options``, ``model.outer_lr``, ``data.tile_size``, ``data.shots``,
``data.meta_batch_size``, ``data.batches_per_epoch``, ``data.query``, ``data.augment``,
``trainer.max_epochs``.

Example (a read-only dataset with a class file of its own)::

    landcover bench regions ../shared/data/dubai-aerial \\
        --classes configs/classes/dubai-aerial.yaml --out runs/regions
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from landcover.device import check_device

BENCH_NAME = "regions"
BENCH_HELP = "leave-one-region-out few-shot benchmark of MAML++ against baselines on ROOT"

#: The bar on real imagery (issue 20): MAML++ at 5 shots, and its least paired margins at 1
#: and 5 shots over the analyst's random forest and over tuned pretrain+finetune.
TARGET: dict[str, float] = {"miou_5shot": 0.50, "vs_rf": 0.10, "vs_pretrain": 0.03}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the bench."""
    parser.add_argument("root", type=Path, help="dataset folder (one folder per region)")
    parser.add_argument("--classes", type=Path, default=None, help="class file to use instead")
    parser.add_argument("--kind", default="auto", help="dataset format (auto-detected)")
    parser.add_argument("--config", type=Path, default=None, help="LightningCLI YAML of defaults")
    parser.add_argument("--out", type=Path, default=Path("runs/regions"), help="report folder")
    parser.add_argument("--folds", type=int, default=None, help="k folds (default: one per region)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument(
        "--only-folds", default=None,
        help="comma-separated fold numbers (1-based) to run, e.g. 1 to try settings quickly",
    )  # fmt: skip
    parser.add_argument("--shots", default=None, help="comma-separated shots (default 1,2,5)")
    parser.add_argument("--tasks", type=int, default=None, help="test tasks per shot and fold")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs")
    parser.add_argument(
        "--tuning-tasks", type=int, default=None, help="validation tasks per shot for the choices"
    )
    parser.add_argument("--tile-size", type=int, default=None, help="tile side in pixels")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--jobs", type=int, default=1,
        help="(seed, fold) runs at once, each in its own process with threads/jobs torch "
        "threads (on a few CPU cores, 2 jobs of 1 thread finish sooner than 1 job of 2)",
    )  # fmt: skip
    parser.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"],
        help="where training, tuning and scoring run (auto: cuda when available)",
    )  # fmt: skip
    parser.add_argument(
        "--export", action="store_true",
        help="also save each fold's MAML++ model as OUT/bundles/seed{S}_fold{F}.bundle (with "
        "its chosen test-time steps), for `landcover adapt` and `landcover predict`",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smoke-sized run (tests)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def config_settings(config: Path | None = None) -> Any:
    """Bench settings: dataclass defaults, then the config file.

    ``config`` defaults to ``configs/folder.yaml`` when it is there (the settings a user
    gets); ``landcover bench adapt-memory`` reads its model from here too.
    """
    import yaml

    from landcover.bench.regions.core import RegionsSettings

    s = RegionsSettings()
    if config is None and Path("configs/folder.yaml").is_file():
        config = Path("configs/folder.yaml")
    if config is not None:
        try:
            cfg = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"{config}: cannot read the config: {err}") from None
        model, data = cfg.get("model") or {}, cfg.get("data") or {}
        s.learner_options = dict(model.get("learner_options") or s.learner_options)
        s.arch = model.get("arch", s.arch)
        s.model_options = dict(model.get("model_options") or s.model_options)
        s.outer_lr = float(model.get("outer_lr", s.outer_lr))
        s.tile_size = int(data.get("tile_size") or s.tile_size)
        s.train_shots = list(data.get("shots") or s.train_shots)
        s.meta_batch_size = int(data.get("meta_batch_size", s.meta_batch_size))
        s.batches_per_epoch = int(data.get("batches_per_epoch", s.batches_per_epoch))
        s.query = int(data.get("query", s.query))
        s.augment = str(data.get("augment", s.augment))
        s.epochs = int((cfg.get("trainer") or {}).get("max_epochs", s.epochs))
        inner = int(s.learner_options.get("steps", 5))
        # 0 steps is a candidate: where the validation area says the inner loop hurts (often
        # at 1 shot), the meta-model is kept, as `landcover adapt`'s guard does per support
        s.maml_steps = sorted({0, 1, inner, 2 * inner, 4 * inner})
    return s


def settings_from(args: argparse.Namespace) -> Any:
    """Bench settings: :func:`config_settings`, then the flags."""
    s = config_settings(args.config)
    if args.quick:
        s.tile_size, s.shots, s.tasks_per_shot, s.epochs = 16, [1, 2], 2, 1
        s.batches_per_epoch, s.meta_batch_size, s.query, s.train_shots = 2, 2, 2, [1, 2]
        s.arch, s.model_options = "small_unet", {"width": 4, "depth": 2, "norm": "batch"}
        s.learner_options = {**s.learner_options, "steps": 1}
        s.finetune_rates, s.finetune_steps, s.maml_steps = [0.1], [2], [1]
        s.tuning_tasks, s.val_tasks = 1, 1
    if args.shots:
        s.shots = [int(k) for k in args.shots.split(",")]
    for flag, name in (("tasks", "tasks_per_shot"), ("epochs", "epochs"),
                       ("tile_size", "tile_size"), ("tuning_tasks", "tuning_tasks")):  # fmt: skip
        if getattr(args, flag) is not None:
            setattr(s, name, int(getattr(args, flag)))
    return s


def fold_splits(names: list[str], folds: int | None) -> list[tuple[list[str], list[str]]]:
    """``(test, val)`` region names per fold.

    Each region (or group of regions, with ``folds``) is the test once; the validation
    region is the first of the next group; the rest train.
    """
    n = len(names)
    k = n if folds is None else int(folds)
    if n < 3:
        raise ValueError(
            f"{n} regions: cross-validation needs at least 3 (train, validation, test)"
        )  # fmt: skip
    if not 2 <= k <= n:
        raise ValueError(f"--folds must be in 2..{n} (the number of regions); got {k}")
    groups = [names[i::k] for i in range(k)]
    splits = [(groups[j], [groups[(j + 1) % k][0]]) for j in range(k)]
    for test, val in splits:
        if len(test) + len(val) >= n:
            raise ValueError(
                f"{k} folds of {n} regions leave no training region (test {test}, "
                f"validation {val}); use more folds"
            )
    return splits


def _write_partial(out: Path, runs: list[dict[str, Any]]) -> None:
    """Per-fold means and margins so far (``partial_folds.json``), kept if a run is cut."""
    from landcover.evaluation.report import atomic_write_text

    rows = []
    for r in runs:
        res = r["result"]
        summary = res.summary()
        margin = res.paired("MAML++", "pretrain+finetune")
        rows.append({
            "seed": r["seed"], "fold": r["fold"], **{k: r["info"][k] for k in ("test", "val")},
            "choices": r["info"]["choices"], "timings": r["info"]["timings"],
            "miou": {m: {str(k): v["miou"]["mean"] for k, v in by.items()}
                     for m, by in summary.items()},
            "margin_vs_pretrain": {str(k): v["mean"] for k, v in margin.items()},
        })  # fmt: skip
    atomic_write_text(out / "partial_folds.json", json.dumps(rows, indent=2, allow_nan=True))


def _export(keep: dict[str, Any], out: Path, seed: int, fold: int, test: list[str],
            root: Path) -> Path:  # fmt: skip
    """Save one fold's MAML++ model (``keep`` from ``run_fold``) as a bundle."""
    from landcover.inference.export_cli import bundle_from_module

    info = {"bench": f"MAML++ of landcover bench regions {root}, seed {seed}, fold {fold} "
                     f"(test regions {test})"}  # fmt: skip
    bundle = bundle_from_module(keep["mamlpp"], inner_steps=keep["maml_steps"], info=info)
    (out / "bundles").mkdir(parents=True, exist_ok=True)
    return bundle.save(out / "bundles" / f"seed{seed}_fold{fold}.bundle")


class _FoldRun:
    """One (seed, fold) run of the bench; picklable, so a process pool can run it.

    It holds how to load the regions, not the regions (their tiles read lazily through
    closures); each process loads them once.
    """

    def __init__(self, s: Any, source: dict[str, Any], out: Path, root: Path, export: bool,
                 device: str, progress: bool, threads: int,
                 regions: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.s, self.source, self.out, self.root = s, source, out, root
        self.export, self.device, self.progress, self.threads = export, device, progress, threads
        self._regions = regions  # loaded already in this process; never pickled

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_regions": None}

    def regions(self) -> dict[str, Any]:
        """The gridded regions by name (loaded on first use in this process)."""
        if self._regions is None:
            self._regions = _load_grid(self.s, **self.source)[1]
        return self._regions

    def __call__(self, item: tuple[int, int, list[str], list[str]]) -> dict[str, Any]:
        """Train, tune and score every method on fold ``j`` with ``seed``."""
        import torch

        from landcover.bench.regions.core import FoldDataModule, run_fold

        seed, j, test, val = item
        torch.set_num_threads(self.threads)
        regions = self.regions()
        train = [r for n, r in regions.items() if n not in test and n not in val]
        dm = FoldDataModule(train, [regions[n] for n in val], [regions[n] for n in test],
                            self.s, seed)  # fmt: skip
        keep: dict[str, Any] | None = {} if self.export else None
        result, info = run_fold(dm, self.s, self.out / "runs" / f"seed{seed}_fold{j}",
                                seed=seed, progress=self.progress, device=self.device,
                                keep=keep)  # fmt: skip
        if keep is not None:
            info["bundle"] = str(_export(keep, self.out, seed, j + 1, test, self.root))
        return {"seed": seed, "fold": j, "result": result, "info": info}


def _load_grid(
    s: Any, root: Path, kind: str, options: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """The dataset's regions sorted by name, and each cut into the bench's tile grid."""
    from landcover.bench.regions.core import grid_region
    from landcover.geo.datasets import load_regions

    raw = sorted(load_regions(root, kind=kind, **options), key=lambda r: r.name)
    return raw, {r.name: grid_region(r, s.tile_size) for r in raw}


def _run_plan(fold: _FoldRun, plan: list[tuple[int, int, list[str], list[str]]], jobs: int,
              start: float) -> Any:  # fmt: skip
    """Yield each run of ``plan`` as it finishes: in this process, or in ``jobs`` processes."""
    if jobs == 1:
        for n, item in enumerate(plan):
            seed, j, test, val = item
            so_far = time.perf_counter() - start
            print(f"[{n + 1}/{len(plan)}] seed {seed}, fold {j + 1}: test {test}, val {val} "
                  f"({so_far:.0f} s so far)", file=sys.stderr, flush=True)  # fmt: skip
            yield fold(item)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    print(f"{len(plan)} runs on {jobs} processes of {fold.threads} thread(s)", file=sys.stderr,
          flush=True)  # fmt: skip
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(fold, item) for item in plan]
        for f in as_completed(futures):
            yield f.result()


def run(args: argparse.Namespace) -> int:
    """Run the bench (exit 2 with a message on bad input)."""
    from landcover.geo.errors import GeoDataError

    try:
        return _run(args)
    except (GeoDataError, ValueError, KeyError, FileNotFoundError) as err:
        print(f"landcover bench regions: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import torch

    from landcover.bench.regions.report import merge_results, write_regions_report
    from landcover.geo.datasets import detect_kind

    s = settings_from(args)
    seeds = [int(x) for x in str(args.seeds).split(",") if x.strip()]
    torch.set_num_threads(max(1, args.threads))
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        check_device(device)
    kind = detect_kind(args.root) if args.kind == "auto" else args.kind
    options: dict[str, Any] = {"classes": args.classes} if args.classes else {}
    if kind == "folder":
        options["cache"] = True
    elif args.classes:
        raise ValueError(f"--classes applies to region folders, not to {kind} datasets")
    source = {"root": args.root, "kind": kind, "options": options}
    raw, regions = _load_grid(s, **source)
    small = {n: len(r) for n, r in regions.items() if len(r) < max(s.shots) + 1}
    if small:
        raise ValueError(
            f"regions {small} have fewer {s.tile_size}-px tiles than the most shots + 1 "
            f"({max(s.shots) + 1}); use smaller --tile-size or fewer --shots"
        )
    splits = list(enumerate(fold_splits(list(regions), args.folds)))
    if args.only_folds:
        wanted = {int(x) for x in str(args.only_folds).split(",") if x.strip()}
        if not wanted <= set(range(1, len(splits) + 1)):
            raise ValueError(
                f"--only-folds must name folds in 1..{len(splits)}; got {sorted(wanted)}"
            )
        splits = [(j, split) for j, split in splits if j + 1 in wanted]
    progress = not args.no_progress
    jobs = max(1, int(args.jobs))
    if jobs > 1 and device == "cuda":
        raise ValueError("--jobs applies to CPU runs; on a GPU run the folds one at a time")
    start = time.perf_counter()
    plan = [(seed, j, test, val) for seed in seeds for j, (test, val) in splits]
    fold = _FoldRun(s, source, args.out, args.root, args.export, device, progress and jobs == 1,
                    max(1, args.threads // jobs), regions)  # fmt: skip
    runs: list[dict[str, Any]] = []
    for done, r in enumerate(_run_plan(fold, plan, jobs, start), 1):
        runs.append(r)
        runs.sort(key=lambda x: (seeds.index(x["seed"]), x["fold"]))
        _write_partial(args.out, runs)
        so_far = time.perf_counter() - start
        print(f"[{done}/{len(plan)}] seed {r['seed']}, fold {r['fold'] + 1} done "
              f"({so_far:.0f} s so far)", file=sys.stderr, flush=True)  # fmt: skip
    pooled = merge_results([r["result"] for r in runs])
    wall = time.perf_counter() - start
    summary = write_regions_report(
        pooled, runs, args.out, scheme=raw[0].scheme, settings=asdict(s), seeds=seeds,
        wall_seconds=wall, root=str(args.root), target=TARGET,
    )  # fmt: skip
    print(summary["table"])
    print("\nMAML++ minus pretrain+finetune (paired mIoU, 95% interval, folds and seeds pooled):")
    for k, d in summary["margins"].items():
        print(f"  {k:>2}-shot: {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
    print("\ntargets:")
    for c in summary["checks"]:
        print(f"  {c['check']}: {c['value']:+.3f} {'met' if c['met'] else 'NOT met'}")
    print(f"report: {summary['report']}  (wall {wall:.0f} s)")
    print(json.dumps({"wall_seconds": round(wall, 1)}))
    return 0
