"""One fold of ``landcover bench regions``: train, tune on validation, score on test.

Every method is trained on the same tiles, the baselines are tuned on validation regions,
and all are scored on the same test tasks.

The protocol is Rußwurm et al. (2020), "Meta-Learning for Few-Shot Land Cover
Classification" (CVPR EarthVision), on a user's own regions: each region's images are cut
into a grid of ``tile_size`` tiles (:func:`grid_region`); a fold holds out test regions,
takes validation regions from the rest and trains on the others. MAML++ (Antoniou et al.
2019) is meta-trained; the pretrain baseline (supervised on the pooled training tiles, then
fine-tuned) and the masked-prototype head (Prototypical Networks, Snell et al. 2017, with
masked average pooling) are trained by the same Lightning module for the same outer steps
on the same tasks; the from-scratch baseline trains only on each task's support. Every
baseline's fine-tuning rate and steps, and MAML++'s test-time steps, are chosen on the
validation regions only. MAML++'s no-step rows (:mod:`landcover.evaluation.no_step_rows`):
``unadapted`` (no support used) and, for Proto-MAML, ``prototypes (0 steps)``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L

from landcover.geo.normalize import compute_band_stats
from landcover.geo.region import Region, TileRef
from landcover.training.datamodule import RegionTaskDataModule


@dataclass
class RegionsSettings:
    """Sizes and model settings of the bench (defaults: ``configs/folder.yaml``).

    Attributes:
        tile_size: Tile side in pixels (images are cut into a grid of such tiles).
        shots: Shot counts scored.
        query: Query tiles per task.
        tasks_per_shot: Test tasks per shot count and fold.
        epochs: Training epochs (every trained method).
        batches_per_epoch: Outer steps per epoch.
        meta_batch_size: Tasks per outer step.
        train_shots: ``[low, high]`` support tiles of training tasks.
        outer_lr: Outer learning rate.
        arch: Network.
        model_options: Network options.
        learner_options: MAML++ options.
        finetune_rates: Candidate fine-tuning SGD rates of the baselines.
        finetune_steps: Candidate fine-tuning steps of the baselines.
        maml_steps: Candidate test-time steps of MAML++ (chosen per shot count).
        tuning_tasks: Validation tasks per shot count for the choices (fine-tuning rate and
            steps, MAML++'s test-time steps). 8: with 2, the choice between MAML++'s
            0 and 12 steps flipped between seeds of one fold (docs/results/regions).
        val_tasks: Validation tasks logged during training.
        augment: Augmentation of training tiles.
        train_protonet: Train the masked-prototype learner episodically (its own run);
            ``False`` takes prototypes on the pretrain baseline's embedding instead.
    """

    tile_size: int = 64
    shots: list[int] = field(default_factory=lambda: [1, 2, 5])
    query: int = 4
    tasks_per_shot: int = 4
    epochs: int = 10
    batches_per_epoch: int = 25
    meta_batch_size: int = 4
    train_shots: list[int] = field(default_factory=lambda: [1, 5])
    outer_lr: float = 1e-3
    arch: str = "small_unet"
    model_options: dict[str, Any] = field(
        default_factory=lambda: {"width": 16, "depth": 4, "norm": "batch"}
    )
    learner_options: dict[str, Any] = field(
        default_factory=lambda: {"steps": 5, "inner_lr": 0.1, "bn": "transductive"}
    )
    finetune_rates: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.1])
    finetune_steps: list[int] = field(default_factory=lambda: [5, 15])
    maml_steps: list[int] = field(default_factory=lambda: [5, 10])
    tuning_tasks: int = 8
    val_tasks: int = 8
    augment: str = "flips"
    train_protonet: bool = False


def grid_starts(length: int, size: int) -> list[int]:
    """Starts of non-overlapping ``size`` tiles along ``length`` pixels.

    A remainder of at least half a tile gets one more tile, shifted back to the edge (it
    overlaps its neighbour by at most half); a smaller remainder is left out, so that a
    support tile and a query tile of one task never share most of their pixels.
    """
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, size))
    if length - (starts[-1] + size) >= size / 2:
        starts.append(length - size)
    return starts


def grid_region(region: Region, size: int) -> Region:
    """The region with every image cut into a grid of ``size`` tiles (:func:`grid_starts`).

    Tiles with no labeled pixel are dropped. The source region should cache its images.
    """
    tiles: list[TileRef] = []
    for i, ref in enumerate(region.tiles):
        mask = region[i]["mask"]
        h, w = mask.shape
        for r in grid_starts(h, size):
            for c in grid_starts(w, size):
                if not bool((mask[r : r + size, c : c + size] < region.scheme.num_classes).any()):
                    continue

                def load(i: int = i, r: int = r, c: int = c) -> dict[str, Any]:
                    s = region[i]
                    out = {
                        k: v[..., r : r + size, c : c + size] for k, v in s.items() if k != "key"
                    }
                    return out

                tiles.append(TileRef(f"{ref.key}_r{r}_c{c}", load))
    return Region(
        region.name, region.scheme, region.band_names, tiles, crs=region.crs,
        meta={**region.meta, "grid": size}, cache=False,
    )  # fmt: skip


class FoldDataModule(RegionTaskDataModule):
    """The tasks of one fold, over regions already in memory (no reading, no split)."""

    def __init__(
        self,
        train: Sequence[Region],
        val: Sequence[Region],
        test: Sequence[Region],
        s: RegionsSettings,
        seed: int,
    ) -> None:
        L.LightningDataModule.__init__(self)
        self.save_hyperparameters({
            "dataset": "folder", "root": "", "options": None, "val_regions": len(val),
            "test_regions": len(test), "split_seed": 0, "shots": list(s.train_shots),
            "query": s.query, "tile_size": s.tile_size, "meta_batch_size": s.meta_batch_size,
            "batches_per_epoch": s.batches_per_epoch, "val_tasks": s.val_tasks,
            "val_shots": 5, "test_tasks": 0, "augment": s.augment, "seed": seed,
            "sparse_support": None,
        })  # fmt: skip
        self.shot_range = (int(s.train_shots[0]), int(s.train_shots[-1]))
        self.train_regions, self.val_regions, self.test_regions = (
            list(train), list(val), list(test)
        )  # fmt: skip
        self.scheme = self.train_regions[0].scheme
        self.band_names = list(self.train_regions[0].band_names)
        self.stats = compute_band_stats(self.train_regions)
        self._samplers = {}


def ignore_index_loss(dm: RegionTaskDataModule) -> Any:
    """The cross-entropy every method is scored with (the data's ignore value)."""
    from torch import nn

    return nn.CrossEntropyLoss(ignore_index=dm.ignore_index)


def fit_options(s: RegionsSettings, *, progress: bool, device: str = "cpu") -> dict[str, Any]:
    """The :func:`~landcover.training.baselines.fit_learner` options every method trains with.

    No re-adapted train metrics and one validation at the end: the budget goes to training.
    """
    return {"max_epochs": s.epochs, "arch": s.arch, "model_options": s.model_options,
            "outer_lr": s.outer_lr, "progress": progress, "train_metrics_every": 0,
            "val_every": s.epochs,
            "accelerator": "gpu" if device.startswith("cuda") else "cpu"}  # fmt: skip


def run_fold(
    dm: FoldDataModule,
    s: RegionsSettings,
    run_dir: Path,
    *,
    seed: int,
    progress: bool,
    device: str = "cpu",
    keep: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train, tune and score every method on one fold.

    ``device`` (``"cpu"`` or ``"cuda"``): where training (Lightning's accelerator),
    tuning and scoring run. ``keep``, when given, receives the trained MAML++ module
    (``"mamlpp"``) and its chosen test-time steps (``"maml_steps"``), e.g. to export it.

    Returns:
        ``(FewShotResult on the fold's test tasks, fold info: choices, grids, timings)``.
    """
    from landcover.models.frozen_encoder import feature_cache

    # a frozen pretrained encoder's features depend on the tile alone: every method and
    # every outer step of this fold reuse them (a no-op for other encoders)
    with feature_cache():
        return _run_fold(dm, s, run_dir, seed=seed, progress=progress, device=device, keep=keep)


def _run_fold(
    dm: FoldDataModule,
    s: RegionsSettings,
    run_dir: Path,
    *,
    seed: int,
    progress: bool,
    device: str,
    keep: dict[str, Any] | None,
) -> tuple[Any, dict[str, Any]]:
    from lightning.pytorch import seed_everything

    from landcover.evaluation.fewshot import Method, evaluate_test_split
    from landcover.evaluation.no_step_rows import no_step_methods
    from landcover.meta.random_forest import RandomForestLearner
    from landcover.meta.registry import build_learner
    from landcover.models import build_model
    from landcover.training.baselines import choose_finetune, choose_steps_per_shot, fit_learner

    seed_everything(seed, workers=True, verbose=False)
    timings: dict[str, float] = {}
    common = fit_options(s, progress=progress, device=device)
    t = time.perf_counter()
    maml = fit_learner("mamlpp", s.learner_options, dm, run_dir / "mamlpp", **common)
    timings["train_mamlpp"] = time.perf_counter() - t
    t = time.perf_counter()
    pre = fit_learner("pretrain", {}, dm, run_dir / "pretrain", validate=False, **common)
    timings["train_pretrain"] = time.perf_counter() - t
    t = time.perf_counter()
    if s.train_protonet:
        proto = fit_learner("protonet", {"num_classes": dm.num_classes}, dm,
                            run_dir / "protonet", validate=False, **common).learner  # fmt: skip
    else:
        # masked prototypes on the pretrain baseline's per-pixel embedding (SimpleShot-style:
        # Wang et al. 2019): no training run of its own
        proto = build_learner("protonet", pre.learner.model, ignore_index_loss(dm),
                              num_classes=dm.num_classes)  # fmt: skip
    timings["train_protonet"] = time.perf_counter() - t
    t = time.perf_counter()
    grid = {"rates": s.finetune_rates, "steps": s.finetune_steps, "tasks": s.tuning_tasks,
            "progress": progress, "device": device}  # fmt: skip
    pre_ft, pre_grid = choose_finetune("pretrain", pre.learner.model, dm, **grid)
    scratch_model = build_model(s.arch, dm.num_bands, dm.num_classes, **s.model_options)
    scratch, scr_grid = choose_finetune("scratch", scratch_model, dm, **grid)
    # MAML++'s test-time steps per shot count (one tile overfits sooner than five)
    maml_steps, maml_grid = choose_steps_per_shot(
        maml.learner, dm, s.maml_steps, shots=s.shots, tasks=s.tuning_tasks, progress=progress,
        device=device,
    )  # fmt: skip
    timings["tune"] = time.perf_counter() - t
    t = time.perf_counter()
    methods = {
        "MAML++": Method(maml.learner, maml_steps),
        # 0 steps: "unadapted", and for Proto-MAML "prototypes (0 steps)" (no_step_rows)
        **no_step_methods(maml.learner),
        "pretrain+finetune": Method(pre_ft),
        "scratch": Method(scratch),
        "protonet": Method(proto),
        "rf": Method(RandomForestLearner(dm.num_classes, ignore_index_loss(dm), seed=seed)),
    }
    result = evaluate_test_split(
        methods, dm, shots=s.shots, tasks_per_shot=s.tasks_per_shot, progress=progress,
        device=device,
    )  # fmt: skip
    timings["evaluate"] = time.perf_counter() - t
    if keep is not None:
        # a bundle's default steps: the most chosen, at least the trained ones (`landcover
        # adapt`'s guard tries fewer, down to 0, on the user's own held-out support)
        trained = int(maml.learner.default_steps)
        keep.update(mamlpp=maml, maml_steps=max(trained, *maml_steps.values()))
    info = {
        "test": [r.name for r in dm.test_regions],
        "val": [r.name for r in dm.val_regions],
        "train": [r.name for r in dm.train_regions],
        "choices": {
            "MAML++": "steps " + ", ".join(f"{k}-shot {n}" for k, n in maml_steps.items()),
            "pretrain+finetune": max(pre_grid, key=pre_grid.get),
            "scratch": max(scr_grid, key=scr_grid.get),
        },
        "validation_grids": {
            "MAML++": maml_grid,
            "pretrain+finetune": pre_grid,
            "scratch": scr_grid,
        },
        "timings": timings,
    }
    return result, info
