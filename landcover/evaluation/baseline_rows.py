"""Baseline rows for ``landcover evaluate``, built from a bundle (no dummy bundles).

Next to the bundles under evaluation, ``--baselines`` adds (Rußwurm et al. 2020's
comparison; Finn et al. 2017, section 5.1, for pretrain + fine-tune):

* ``unadapted``: the first bundle's meta-learned model with no adaptation step; for a
  Proto-MAML bundle also ``prototypes (0 steps)``, its support prototypes in the classifier
  and no gradient step (:mod:`landcover.evaluation.no_step_rows`);
* ``scratch``: a fresh network of the first bundle's architecture, trained on each task's
  support only by SGD;
* ``pretrain``: the same architecture trained by plain supervised learning on the tiles of
  ``--pretrain-regions`` (normalised with the bundle's statistics, ``--pretrain-steps`` outer
  steps of Adam over pooled support + query tiles of sampled tasks), then fine-tuned on each
  task's support by SGD.

* ``rf``: the analyst's own tool, a random forest on a multi-scale filter bank fitted to
  each task's support alone (:mod:`landcover.meta.random_forest`); it needs no training
  regions.

The fine-tuning rate and steps of ``scratch`` and ``pretrain`` are chosen on
``--val-regions`` from a small grid when given (never on the evaluated regions), else the
``--finetune-lr`` / ``--finetune-steps`` values are used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from landcover.evaluation.fewshot import Method
from landcover.evaluation.no_step_rows import DESCRIPTIONS, no_step_methods
from landcover.geo.normalize import BandStats
from landcover.geo.region import Region
from landcover.inference.bundle import ModelBundle
from landcover.meta.protocol import Learner
from landcover.meta.registry import build_learner
from landcover.models.factory import build_from_config
from landcover.tasks.region import RegionTaskSampler
from landcover.tasks.scoring import score_task

#: Valid ``--baselines`` entries.
BASELINES = ("unadapted", "scratch", "pretrain", "rf")
PRETRAIN_NEEDS = (
    "the pretrain baseline needs --pretrain-regions DIR (the regions the meta-model was "
    "trained on, to pretrain the same network on)"
)
#: Grid of (rate, steps) tried on validation regions.
GRID_RATES, GRID_STEPS = (0.01, 0.03, 0.1, 0.3), (10, 30)


def parse_baselines(text: str | None) -> list[str]:
    """``"scratch,pretrain"`` -> the list, checked against :data:`BASELINES`."""
    names = [b.strip() for b in (text or "").split(",") if b.strip()]
    bad = [b for b in names if b not in BASELINES]
    if bad:
        raise ValueError(f"unknown baselines {bad}; choose from {', '.join(BASELINES)}")
    return names


def _sampler(bundle: ModelBundle, regions: Sequence[Region], shots: int, query: int,
             tile_size: int, seed: int) -> RegionTaskSampler:  # fmt: skip
    stats = BandStats(tuple(bundle.mean), tuple(bundle.std), tuple(bundle.bands))
    return RegionTaskSampler(regions, shots=shots, query=query, tile_size=tile_size,
                             stats=stats, ignore_index=bundle.ignore_index, seed=seed)  # fmt: skip


def pretrain_network(
    bundle: ModelBundle,
    regions: Sequence[Region],
    *,
    steps: int,
    tile_size: int,
    batch: int = 4,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> nn.Module:
    """A network of ``bundle``'s architecture trained on the pooled tiles of ``regions``."""
    torch.manual_seed(seed)
    model = build_from_config(bundle.model)
    learner = build_learner("pretrain", model, bundle.loss_fn())
    smallest = min(len(r) for r in regions)
    if smallest < 2:
        raise ValueError("every pretraining region needs at least 2 tiles")
    shots = max(1, min(5, smallest - 2))
    sampler = _sampler(bundle, regions, shots, min(4, smallest - shots), tile_size, seed + 101)
    opt = torch.optim.Adam(learner.parameters(), lr=lr)
    learner.train()
    for step in tqdm(range(steps), desc="pretrain baseline", disable=not progress):
        opt.zero_grad()
        learner.meta_backward([sampler.task(step * batch + j) for j in range(batch)])
        opt.step()
    return model.eval()


def _tune(name: str, model: nn.Module, bundle: ModelBundle, val: Sequence[Region] | None,
          lr: float, steps: int, tile_size: int, seed: int,
          shots: Sequence[int], tasks: int) -> tuple[Learner, str]:  # fmt: skip
    loss = bundle.loss_fn()
    if not val:
        how = (f"lr={lr:g},steps={steps} as given by --finetune-lr/--finetune-steps (not "
               "tuned: --val-regions chooses them on validation regions)")  # fmt: skip
        return build_learner(name, model, loss, finetune_lr=lr, steps=steps).eval(), how
    k = len(bundle.class_names)
    scores: dict[tuple[float, int], list[float]] = {}
    for rate in GRID_RATES:
        learner = build_learner(name, model, loss, finetune_lr=rate, steps=max(GRID_STEPS)).eval()
        for k_shots in shots:
            sampler = _sampler(bundle, val, k_shots, 1, tile_size, seed + 7)
            for i in range(tasks):
                task = sampler.task(i)
                for n in GRID_STEPS:
                    s, _ = score_task(learner, task, n, k, bundle.ignore_index)
                    scores.setdefault((rate, n), []).append(s["miou"])
    best = max(scores, key=lambda key: float(np.nanmean(scores[key])))
    chosen = build_learner(name, model, loss, finetune_lr=best[0], steps=best[1]).eval()
    return chosen, f"lr={best[0]:g},steps={best[1]} (validation)"


def baseline_methods(
    names: Sequence[str],
    bundle: ModelBundle,
    *,
    tile_size: int,
    pretrain_regions: Sequence[Region] | None,
    val_regions: Sequence[Region] | None,
    pretrain_steps: int,
    finetune_lr: float,
    finetune_steps: int,
    tune_shots: Sequence[int] = (1, 5),
    tuning_tasks: int = 4,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict[str, Method], dict[str, Any]]:
    """The requested baseline rows and how each was set up (for the report).

    ``tuning_tasks`` validation tasks of each of ``tune_shots`` shots choose the fine-tuning
    rate and steps.
    """
    methods: dict[str, Method] = {}
    info: dict[str, Any] = {}
    for name in names:
        if name == "unadapted":
            # a Proto-MAML bundle also gets "prototypes (0 steps)" (no_step_rows)
            for row, method in no_step_methods(bundle.build_learner()).items():
                methods[row] = method
                info[row] = f"the first bundle: {DESCRIPTIONS[row]}"
        elif name == "rf":
            from landcover.meta.random_forest import RandomForestLearner

            methods["rf"] = Method(
                RandomForestLearner(len(bundle.class_names), bundle.loss_fn(), seed=seed)
            )
            info["rf"] = "random forest (100 trees, depth 16) on a multi-scale filter bank"
        elif name == "scratch":
            torch.manual_seed(seed)
            learner, how = _tune("scratch", build_from_config(bundle.model), bundle, val_regions,
                                 finetune_lr, finetune_steps, tile_size, seed,
                                 tune_shots, tuning_tasks)  # fmt: skip
            methods["scratch"], info["scratch"] = Method(learner), how
        else:
            if not pretrain_regions:
                raise ValueError(PRETRAIN_NEEDS)
            net = pretrain_network(bundle, pretrain_regions, steps=pretrain_steps,
                                   tile_size=tile_size, seed=seed, progress=progress)  # fmt: skip
            learner, how = _tune("pretrain", net, bundle, val_regions, finetune_lr,
                                 finetune_steps, tile_size, seed, tune_shots,
                                 tuning_tasks)  # fmt: skip
            methods["pretrain+finetune"] = Method(learner)
            info["pretrain+finetune"] = f"{pretrain_steps} outer steps; {how}"
    return methods, info
