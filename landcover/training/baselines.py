"""Baselines on the same data and budget as meta-training, and the trainer they share.

* **Pretrain + fine-tune** (the transfer-learning baseline of Rußwurm et al. 2020): the
  network is trained with plain supervised learning on the pooled tiles of the training
  regions — the ``pretrain`` learner of ``landcover.meta`` trained by the same
  :class:`~landcover.training.module.MetaLearningModule`, on the same tasks, with the same
  number of outer steps and the same outer optimizer as MAML++ — then fine-tuned by
  gradient descent on the support tiles of each test task. Its fine-tuning step count and
  rate are chosen on the *validation* regions (never on the test regions) from a small
  grid, so the baseline is not handicapped by a guess.
* **From scratch**: a freshly initialised network trained only on the support tiles (the
  ``scratch`` learner), with the same kind of validation-chosen settings.
* **Oracle** (optional): a network trained on the labeled tiles of the target region
  itself, minus the query tiles; an upper reference, not a few-shot method.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from landcover.meta.protocol import Learner
from landcover.meta.registry import build_learner
from landcover.tasks.scoring import score_task
from landcover.training.callbacks import MetaCheckpoint
from landcover.training.datamodule import RegionTaskDataModule
from landcover.training.module import MetaLearningModule


def make_trainer(
    run_dir: str | Path,
    max_epochs: int,
    *,
    progress: bool = True,
    validate: bool = True,
    val_every: int = 1,
    **trainer_options: Any,
) -> L.Trainer:
    """A Lightning trainer set up for meta-learning (see :mod:`landcover.training.cli`).

    Args:
        run_dir: Run folder (checkpoints in ``run_dir/checkpoints``, CSV logs beside).
        max_epochs: Epochs.
        progress: Show Lightning's progress bar.
        validate: Run validation (and keep the best checkpoint by ``val/miou_after``).
        val_every: Validate (and checkpoint) every this many epochs.
        **trainer_options: Further ``lightning.Trainer`` arguments.

    Returns:
        The trainer.
    """
    run_dir = Path(run_dir)
    val_every = max(1, int(val_every))
    ckpt = MetaCheckpoint(
        dirpath=run_dir / "checkpoints",
        save_last=True,
        every_n_epochs=val_every,
        save_top_k=1 if validate else 0,
        monitor="val/miou_after" if validate else None,
        mode="max",
        filename="best-{epoch}-{step}",
    )
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": max_epochs,
        "default_root_dir": str(run_dir),
        "logger": CSVLogger(str(run_dir), name="logs"),
        "callbacks": [ckpt],
        "inference_mode": False,
        "use_distributed_sampler": False,
        "enable_progress_bar": progress,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "log_every_n_steps": 5,
        "limit_val_batches": 1.0 if validate else 0,
        "check_val_every_n_epoch": val_every,
    }
    options.update(trainer_options)
    return L.Trainer(**options)


def fit_learner(
    learner: str,
    learner_options: dict[str, Any],
    datamodule: RegionTaskDataModule,
    run_dir: str | Path,
    *,
    max_epochs: int,
    arch: str = "small_unet",
    model_options: dict[str, Any] | None = None,
    outer_lr: float = 1e-3,
    eval_steps: int | None = None,
    validate: bool = True,
    progress: bool = True,
    train_metrics_every: int = 10,
    val_every: int = 1,
    **trainer_options: Any,
) -> MetaLearningModule:
    """Train one learner with the shared module and trainer (same data, same budget).

    ``train_metrics_every`` (0: never) re-adapts one training task every that many steps
    to log train mIoU before and after adaptation; ``val_every`` validates every that many
    epochs. Both cost adaptations that are not training: benchmarks turn them down.

    Returns:
        The trained module (its ``learner`` and ``data_meta``); the run's checkpoints are in
        ``run_dir/checkpoints`` (``last.ckpt``).
    """
    module = MetaLearningModule(
        learner=learner,
        learner_options=learner_options,
        arch=arch,
        model_options=model_options or {},
        in_channels=datamodule.num_bands,
        num_classes=datamodule.num_classes,
        ignore_index=datamodule.ignore_index,
        outer_lr=outer_lr,
        eval_steps=eval_steps,
        train_metrics_every=train_metrics_every,
    )
    trainer = make_trainer(
        run_dir, max_epochs, progress=progress, validate=validate, val_every=val_every,
        **trainer_options,
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    return module


def choose_finetune(
    name: str,
    model: nn.Module,
    datamodule: RegionTaskDataModule,
    *,
    rates: Sequence[float],
    steps: Sequence[int],
    shots: Sequence[int] = (1, 5),
    tasks: int = 8,
    progress: bool = False,
    device: torch.device | str = "cpu",
) -> tuple[Learner, dict[str, float]]:
    """Choose a baseline's fine-tuning rate and step count on the validation regions.

    Every ``(rate, steps)`` pair of the grid adapts on the same validation tasks (``tasks``
    per shot count in ``shots``); the pair with the best mean mIoU wins. The test regions
    are never looked at.

    Args:
        name: Baseline learner (``"pretrain"`` or ``"scratch"``).
        model: Its network (the pretrained one for ``"pretrain"``; shared, not copied).
        datamodule: Source of the validation tasks.
        rates: Candidate SGD rates (``finetune_lr``).
        steps: Candidate step counts.
        shots: Shot counts of the validation tasks.
        tasks: Validation tasks per shot count.
        progress: Show a progress bar.
        device: Where the validation tasks adapt (the model is moved there).

    Returns:
        ``(learner built with the best rate and step count, {"lr=..,steps=..": mean mIoU})``.
    """
    if not rates or not steps:
        raise ValueError("choose_finetune needs at least one rate and one step count")
    loss_fn = nn.CrossEntropyLoss(ignore_index=datamodule.ignore_index)
    learners = {
        float(lr): build_learner(name, model, loss_fn, finetune_lr=float(lr), steps=max(steps))
        for lr in rates
    }
    settings = {f"lr={lr:g},steps={s}": (lr, int(s)) for lr in learners for s in steps}
    methods = {key: (learners[lr], n) for key, (lr, n) in settings.items()}
    grid = _validation_grid(methods, datamodule, shots, tasks, progress, device)
    lr, n = settings[max(grid, key=lambda key: grid[key])]
    chosen = build_learner(name, model, loss_fn, finetune_lr=lr, steps=n)
    return chosen.eval(), grid


def choose_steps(
    learner: Learner,
    datamodule: RegionTaskDataModule,
    candidates: Sequence[int],
    *,
    shots: Sequence[int] = (1, 5),
    tasks: int = 8,
    progress: bool = False,
    device: torch.device | str = "cpu",
) -> tuple[int, dict[str, float]]:
    """Choose a learner's test-time inner-step count on the validation regions.

    ``device``: where the validation tasks adapt (the learner is moved there).

    Returns:
        ``(best step count, {"steps=..": mean validation mIoU})``.
    """
    if not candidates:
        raise ValueError("choose_steps needs at least one candidate step count")
    counts = {f"steps={int(s)}": int(s) for s in candidates}
    methods = {key: (learner, n) for key, n in counts.items()}
    grid = _validation_grid(methods, datamodule, shots, tasks, progress, device)
    return counts[max(grid, key=lambda key: grid[key])], grid


def choose_steps_per_shot(
    learner: Learner,
    datamodule: RegionTaskDataModule,
    candidates: Sequence[int],
    *,
    shots: Sequence[int],
    tasks: int = 8,
    progress: bool = False,
    device: torch.device | str = "cpu",
) -> tuple[dict[int, int], dict[str, float]]:
    """Choose a learner's test-time inner steps for each shot count on the validation regions.

    One support tile overfits in fewer steps than five (the adaptation guard of
    ``landcover adapt`` chooses per support too): each shot count gets the candidate with
    the best mean validation mIoU on validation tasks with that many support tiles.

    Returns:
        ``({shots: steps}, {"<k>-shot steps=<n>": mean validation mIoU})``.
    """
    chosen: dict[int, int] = {}
    grid: dict[str, float] = {}
    for k in shots:
        best, scores = choose_steps(learner, datamodule, candidates, shots=(int(k),),
                                    tasks=tasks, progress=progress, device=device)  # fmt: skip
        chosen[int(k)] = best
        grid.update({f"{int(k)}-shot {key}": v for key, v in scores.items()})
    return chosen, grid


def _validation_grid(
    methods: dict[str, tuple[Learner, int | None]],
    datamodule: RegionTaskDataModule,
    shots: Sequence[int],
    tasks: int,
    progress: bool,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Mean validation mIoU of each ``(learner, steps)`` over ``shots`` (same tasks for all)."""
    from tqdm.auto import tqdm

    for learner, _ in methods.values():
        learner.to(device).eval()
    scores: dict[str, dict[int, list[float]]] = {
        key: {int(k): [] for k in shots} for key in methods
    }
    bar = tqdm(total=len(shots) * tasks, desc="validation grid", unit="task", disable=not progress)
    for k in shots:
        for i in range(tasks):
            task = datamodule.eval_task("val", i, shots=int(k)).to(device)
            for key, (learner, steps) in methods.items():
                s, _ = score_task(
                    learner, task, steps, datamodule.num_classes, datamodule.ignore_index
                )
                scores[key][int(k)].append(s["miou"])
            bar.update(1)
    bar.close()
    return {
        key: float(np.nanmean([np.nanmean(scores[key][int(k)]) for k in shots])) for key in methods
    }
