"""``landcover demo [--out runs/demo]``: the README's main job, end to end on a CPU.

By default the demo runs on the real aerial sample in the repository
(:mod:`landcover.evaluation.demo_real`). ``--synthetic`` runs the synthetic demo below:

1. Synthesize regions (:mod:`landcover.geo.synthetic`) in the users' folder format.
2. Meta-train MAML++ (Antoniou et al. 2019) on a small U-Net over the training regions.
3. Train the pretrain baseline on the same tasks with the same number of outer steps, and
   choose its fine-tuning steps, and the from-scratch baseline's, on the validation
   regions.
4. Evaluate every method on the same k-shot tasks (k = 1, 2, 5, 10) of held-out regions.
5. Write ``report.md``, ``metrics.json`` and PNG plots, and export the MAML++ run as a
   model bundle (``maml.bundle``) for ``landcover adapt`` / ``predict`` / the service.

Everything is sized for about ten minutes on two CPU cores; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from landcover.evaluation.fewshot import Method, evaluate_test_split
from landcover.evaluation.report import atomic_write_text, markdown_table, write_report

#: Generator knobs of the demo's regions (fields of ``SynthConfig``; others at defaults).
DEMO_SYNTH: dict[str, Any] = {"regions": 16, "tiles_per_region": 32, "tile_size": 64}

#: The network: a small U-Net for CPUs.
DEMO_ARCH = "small_unet"
DEMO_MODEL: dict[str, Any] = {"width": 8, "depth": 3, "norm": "batch"}

#: MAML++ with its paper switches; inner steps at training and test.
DEMO_MAMLPP: dict[str, Any] = {
    "steps": 3,
    "inner_lr": 0.1,
    "bn": "transductive",
    "msl_epochs": 5,
    "first_order_epochs": 5,
}


@dataclass
class DemoSettings:
    """Sizes of the demo (the defaults fit about ten minutes on two cores).

    Attributes:
        out: Output folder.
        synth: Generator knobs.
        val_regions: Validation regions (choose baseline settings, pick checkpoints).
        test_regions: Held-out regions for the evaluation.
        tile_size: Crop size of task tiles.
        query: Query tiles per task.
        train_shots: ``[low, high]`` support tiles of training tasks.
        epochs: Training epochs (same for MAML++ and the pretrain baseline).
        batches_per_epoch: Outer steps per epoch.
        meta_batch_size: Tasks per outer step.
        outer_lr: Outer learning rate.
        shots: Shot counts evaluated.
        tasks_per_shot: Test tasks per shot count.
        finetune_rates: Candidate fine-tuning SGD rates of the baselines.
        finetune_steps: Candidate fine-tuning step counts of the baselines.
        tuning_tasks: Validation tasks per shot count (1 and 5) for choosing them.
        maml_test_steps: Candidate test-time inner steps of MAML++ (chosen the same way).
        seed: Seed of everything.
        threads: Torch CPU threads.
    """

    out: Path = Path("runs/demo")
    synth: dict[str, Any] = field(default_factory=lambda: dict(DEMO_SYNTH))
    val_regions: int = 2
    test_regions: int = 4
    tile_size: int = 32
    query: int = 4
    train_shots: list[int] = field(default_factory=lambda: [1, 5])
    epochs: int = 16
    batches_per_epoch: int = 30
    meta_batch_size: int = 4
    outer_lr: float = 3e-3
    shots: list[int] = field(default_factory=lambda: [1, 2, 5, 10])
    tasks_per_shot: int = 40
    finetune_rates: list[float] = field(default_factory=lambda: [0.03, 0.1, 0.3])
    finetune_steps: list[int] = field(default_factory=lambda: [10, 30])
    tuning_tasks: int = 6
    maml_test_steps: list[int] = field(default_factory=lambda: [3, 10, 25])
    seed: int = 0
    threads: int = 1

    @classmethod
    def quick(cls, out: Path) -> DemoSettings:
        """A smoke-sized demo (a minute or so): same code path, tiny budget."""
        return cls(
            out=out,
            synth={**DEMO_SYNTH, "regions": 6, "tiles_per_region": 12},
            val_regions=1,
            test_regions=2,
            epochs=1,
            batches_per_epoch=2,
            meta_batch_size=2,
            shots=[1, 5],
            tasks_per_shot=3,
            finetune_rates=[0.1],
            finetune_steps=[2, 5],
            tuning_tasks=2,
            maml_test_steps=[3],
        )


def demo_data(out: Path, knobs: dict[str, Any]) -> Path:
    """The demo's region folder ``out/data``, emptied if an earlier demo made other regions.

    The folder is the demo's own output: a ``--quick`` run followed by a full one in the same
    ``--out`` must not evaluate the full demo on the quick run's regions.
    """
    from landcover.training.data_options import check_reader_options

    data = Path(out) / "data"
    try:
        check_reader_options("synthetic", data, knobs)
    except ValueError:
        shutil.rmtree(data)
    return data


def run_demo(s: DemoSettings, progress: bool = True) -> dict[str, Any]:
    """Run the demo; return the report paths, timings and the MAML++ margins."""
    from lightning.pytorch import seed_everything

    from landcover.models import build_model
    from landcover.training.baselines import choose_finetune, choose_steps, fit_learner
    from landcover.training.datamodule import RegionTaskDataModule

    torch.set_num_threads(max(1, s.threads))
    seed_everything(s.seed, workers=True, verbose=False)
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.process_time()

    knobs = {**s.synth, "seed": s.seed}
    dm = RegionTaskDataModule(
        dataset="synthetic",
        root=str(demo_data(out, knobs)),
        options=knobs,
        val_regions=s.val_regions,
        test_regions=s.test_regions,
        shots=s.train_shots,
        query=s.query,
        tile_size=s.tile_size,
        meta_batch_size=s.meta_batch_size,
        batches_per_epoch=s.batches_per_epoch,
        val_tasks=8,
        val_shots=5,
        seed=s.seed,
    )
    timings["data"] = time.perf_counter() - t0

    common = {
        "max_epochs": s.epochs,
        "arch": DEMO_ARCH,
        "model_options": DEMO_MODEL,
        "outer_lr": s.outer_lr,
        "progress": progress,
    }
    t = time.perf_counter()
    maml = fit_learner("mamlpp", DEMO_MAMLPP, dm, out / "runs" / "mamlpp", **common)
    timings["train_mamlpp"] = time.perf_counter() - t

    t = time.perf_counter()
    pre = fit_learner("pretrain", {}, dm, out / "runs" / "pretrain", validate=False, **common)
    timings["train_pretrain"] = time.perf_counter() - t

    t = time.perf_counter()
    grid = {
        "rates": s.finetune_rates,
        "steps": s.finetune_steps,
        "tasks": s.tuning_tasks,
        "progress": progress,
    }
    pre_ft, pre_grid = choose_finetune("pretrain", pre.learner.model, dm, **grid)
    scratch_model = build_model(DEMO_ARCH, dm.num_bands, dm.num_classes, **DEMO_MODEL)
    scratch, scr_grid = choose_finetune("scratch", scratch_model, dm, **grid)
    maml_steps, maml_grid = choose_steps(
        maml.learner, dm, s.maml_test_steps, tasks=s.tuning_tasks, progress=progress
    )
    pre_best, scr_best = max(pre_grid, key=pre_grid.get), max(scr_grid, key=scr_grid.get)
    timings["tune_baselines"] = time.perf_counter() - t

    t = time.perf_counter()
    methods = {
        "MAML++": Method(maml.learner, maml_steps),
        "pretrain+finetune": Method(pre_ft),
        "scratch": Method(scratch),
    }
    result = evaluate_test_split(
        methods, dm, shots=s.shots, tasks_per_shot=s.tasks_per_shot, progress=progress
    )
    timings["evaluate"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    timings["cpu_total"] = time.process_time() - c0

    result.meta.update(
        settings=json.loads(json.dumps(asdict(s), default=str)),
        regions=dm.data_meta["regions"],
        validation_grids={"MAML++": maml_grid, "pretrain+finetune": pre_grid, "scratch": scr_grid},
        timings=timings,
    )
    notes = [
        f"Held-out regions: {', '.join(dm.data_meta['regions']['test'])}; "
        f"{s.tasks_per_shot} tasks per shot count, every method on the same tasks.",
        f"Network: {DEMO_ARCH} {DEMO_MODEL}; MAML++ {DEMO_MAMLPP}; {s.epochs} epochs × "
        f"{s.batches_per_epoch} outer steps × {s.meta_batch_size} tasks for MAML++ and for "
        "the pretrain baseline alike.",
        f"Fine-tuning (SGD rate, steps) chosen on the validation regions from "
        f"{s.finetune_rates} × {s.finetune_steps}: pretrain {pre_best}, scratch {scr_best}; "
        f"MAML++ test-time steps from {s.maml_test_steps}: {maml_steps} (its rates are the "
        "learned LSLR rates).",
        f"Generator knobs: {s.synth}.",
        "Wall time (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in timings.items() if k != "cpu_total")
        + f"; CPU time of the process {timings['cpu_total']:.0f} s.",
    ]
    margins = result.paired("MAML++", "pretrain+finetune")
    target = [k for k in (1, 5) if k in margins]
    met = all(margins[k]["mean"] >= 0.05 and margins[k]["low"] > 0 for k in target)
    notes.append(
        f"Issue target (MAML++ ahead of pretrain+finetune by >= 0.05 mIoU at {target} shots, "
        f"paired 95% interval above 0): **{'met' if met else 'NOT met'}** ("
        + "; ".join(
            f"{k}-shot {margins[k]['mean']:+.3f} [{margins[k]['low']:+.3f}, "
            f"{margins[k]['high']:+.3f}]"
            for k in target
        )
        + ")."
    )
    paths = write_report(
        result,
        out / "report",
        class_names=dm.scheme.names,
        colors=dm.scheme.colors,
        main_method="MAML++",
        title="landcover demo: MAML++ against baselines on held-out synthetic regions",
        notes=notes,
        rgb_bands=(2, 1, 0),
        ignore_index=dm.ignore_index,
    )
    from landcover.inference.export_cli import bundle_from_module

    bundle = bundle_from_module(
        maml, inner_steps=maml_steps, info={"demo": "MAML++ meta-trained by landcover demo"}
    ).save(out / "maml.bundle")
    summary = {
        "report": str(paths["report"]),
        "bundle": str(bundle),
        "timings": timings,
        "margins_vs_pretrain": {str(k): v for k, v in margins.items()},
        "target_met": met,
        "table": markdown_table(result),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def main(argv: list[str]) -> int:
    """Entry point of ``landcover demo``."""
    parser = argparse.ArgumentParser(prog="landcover demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument(
        "--synthetic", action="store_true",
        help="run on synthesized regions instead of the real dubai-aerial sample",
    )  # fmt: skip
    parser.add_argument(
        "--data", type=Path, default=None,
        help="region folders to run the real demo on (default: data/samples/dubai-aerial)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smoke-sized run (about a minute)")
    parser.add_argument("--tasks", type=int, default=None, help="test tasks per shot count")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    for name, least in (("tasks", 2), ("epochs", 1), ("threads", 1)):
        value = getattr(args, name)
        if value is not None and value < least:
            parser.error(f"--{name} must be at least {least}; got {value}")
    if args.synthetic and args.data is not None:
        parser.error("--data names real region folders; it does not go with --synthetic")
    if not args.synthetic:
        return _real(args)
    s = DemoSettings.quick(args.out) if args.quick else DemoSettings(out=args.out)
    if args.tasks is not None:
        s.tasks_per_shot = args.tasks
    if args.epochs is not None:
        s.epochs = args.epochs
    if args.threads is not None:
        s.threads = args.threads
    summary = run_demo(s, progress=not args.no_progress)
    print(summary["table"])
    print("\nMAML++ minus pretrain+finetune (paired mIoU, 95% interval):")
    for k, d in summary["margins_vs_pretrain"].items():
        print(f"  {k:>2}-shot: {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
    print(f"\nreport: {summary['report']}  (total {summary['timings']['total']:.0f} s)")
    print(f"model bundle: {summary['bundle']} (landcover adapt / predict / serve)")
    return 0


def _real(args: argparse.Namespace) -> int:
    """The demo on real imagery (:func:`landcover.evaluation.demo_real.run_real_demo`)."""
    from landcover.evaluation.demo_real import run_real_demo

    try:
        summary = run_real_demo(
            args.out, root=args.data, tasks=args.tasks, epochs=args.epochs,
            threads=args.threads or 2, progress=not args.no_progress, quick=args.quick,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as err:
        print(f"landcover demo: error: {err}", file=sys.stderr)
        return 2
    print(summary["table"])
    print(f"\nheld-out area {summary['test']} (validation {summary['val']}); margins of MAML++ "
          "(paired mIoU, 95% interval):")  # fmt: skip
    for k, d in summary["margins"].items():
        print(f"  vs pretrain+finetune {k:>2}-shot: {d['mean']:+.3f} [{d['low']:+.3f}, "
              f"{d['high']:+.3f}]")  # fmt: skip
    for c in summary["checks"]:
        print(f"  {c['check']}: {c['value']:+.3f} {'met' if c['met'] else 'NOT met'}")
    print(f"\nreport: {summary['report']}  (total {summary['timings']['total']:.0f} s)")
    print(f"model bundle: {summary['bundle']} (landcover adapt / predict / serve)")
    return 0
