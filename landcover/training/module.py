"""LightningModule that meta-trains any learner of ``landcover.meta`` on region tasks.

Manual optimization: a training step takes a meta-batch of tasks, accumulates the mean
meta-gradient with ``learner.meta_backward`` (one backward per task; across ranks with the
all-reduce of :mod:`landcover.training.ddp`), and takes one outer step (Adam with cosine
annealing of the outer rate, as in MAML++, Antoniou et al. 2019, "How to train your MAML").
Before each epoch ``learner.on_epoch_start(epoch)`` drives the learner's schedules
(MAML++'s multi-step loss weights and derivative-order annealing).

Logged: ``train/loss`` every step; ``train/miou_before`` / ``train/miou_after`` on the
first task of every ``train_metrics_every``-th meta-batch; ``val/miou_before``,
``val/miou_after`` (and accuracy / kappa after adaptation) on the validation tasks, i.e.
mIoU of the meta-model before adaptation and after ``eval_steps`` inner steps on the
support set. Baselines train with the same module: the ``pretrain`` learner's meta-loss is
plain supervised training on the pooled tiles of the tasks, so it gets the same data and
the same number of outer steps.
"""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
import torch
from torch import nn

from landcover.meta.protocol import Learner
from landcover.meta.registry import build_learner, learner_class
from landcover.models import build_model
from landcover.tasks.scoring import score_task
from landcover.tasks.task import Task
from landcover.training.ddp import distributed_meta_backward
from landcover.training.schedule import budget_cosine


def context_channels(learner: str, options: dict[str, Any]) -> int:
    """Input channels a learner appends to the bands (CAVIA's ``context_dim``), else 0.

    Args:
        learner: Registry name of the learner.
        options: Its options; ``context_dim`` there overrides the class default.
    """
    param = inspect.signature(learner_class(learner).__init__).parameters.get("context_dim")
    if param is None:
        return 0
    return int(options.get("context_dim", param.default))


class MetaLearningModule(L.LightningModule):
    """Meta-trains a learner (MAML++ by default) around a segmentation network.

    Args:
        learner: Learner name of ``landcover.meta.registry`` (``"mamlpp"``, ``"maml"``,
            ``"pretrain"``, ...).
        learner_options: Learner options (inner steps, rates, MAML++ switches); JSON values.
        arch: Network of ``landcover.models.build_model`` (``"small_unet"``,
            ``"smp:resnet18"``, ...).
        model_options: Network options (width, depth, norm); JSON values.
        in_channels: Input bands (linked to the data module's band count by the CLI).
        num_classes: Classes (linked to the data module's class scheme by the CLI).
        ignore_index: Mask value of unlabeled pixels.
        outer_lr: Initial outer (meta) learning rate.
        min_lr: Outer rate at the end of the cosine schedule.
        weight_decay: Adam weight decay.
        grad_clip: Clip the meta-gradient's norm to this value (``0``: no clipping).
        eval_steps: Inner steps at validation/test (``None``: the learner's default).
        train_metrics_every: Score train mIoU before/after adaptation every N steps
            (``0``: never).
    """

    def __init__(
        self,
        learner: str = "mamlpp",
        learner_options: dict[str, Any] | None = None,
        arch: str = "small_unet",
        model_options: dict[str, Any] | None = None,
        in_channels: int = 4,
        num_classes: int = 6,
        ignore_index: int = 255,
        outer_lr: float = 1e-3,
        min_lr: float = 1e-5,
        weight_decay: float = 0.0,
        grad_clip: float = 0.0,
        eval_steps: int | None = None,
        train_metrics_every: int = 10,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        extra = context_channels(learner, learner_options or {})
        model = build_model(arch, in_channels + extra, num_classes, **(model_options or {}))
        loss_fn = nn.CrossEntropyLoss(ignore_index=ignore_index)
        self.learner: Learner = build_learner(learner, model, loss_fn, **(learner_options or {}))
        #: Band names, class scheme, normalisation and tile size of the training data; saved
        #: in checkpoints so ``landcover export`` can build a self-describing bundle.
        self.data_meta: dict[str, Any] = {}

    # -- data description -------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Take the data description from the data module, when there is one."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        meta = getattr(dm, "data_meta", None)
        if meta:
            self.data_meta = dict(meta)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the data description next to the weights."""
        checkpoint["landcover_data"] = self.data_meta

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the data description."""
        self.data_meta = dict(checkpoint.get("landcover_data", {}))

    # -- optimisation -----------------------------------------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        """Adam on every learner parameter, cosine-annealed to ``min_lr`` over the run.

        The run's budget is its steps or its time (``max_time``), whichever ends first
        (:mod:`landcover.training.schedule`).
        """
        hp = self.hparams
        opt = torch.optim.Adam(
            self.learner.parameters(), lr=hp.outer_lr, weight_decay=hp.weight_decay
        )
        floor = float(hp.min_lr) / float(hp.outer_lr) if hp.outer_lr else 1.0
        sched = torch.optim.lr_scheduler.LambdaLR(opt, budget_cosine(self.trainer, floor))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_epoch_start(self) -> None:
        """Drive the learner's epoch schedules (MAML++ annealing)."""
        self.learner.on_epoch_start(self.current_epoch)

    def training_step(self, batch: list[Task], batch_idx: int) -> torch.Tensor:
        """One outer step on a meta-batch of tasks (this rank's share of it)."""
        opt = self.optimizers()
        sched = self.lr_schedulers()
        self.learner.train()
        opt.zero_grad()
        stats = distributed_meta_backward(self.learner, batch)
        if self.hparams.grad_clip > 0:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.grad_clip)
        opt.step()
        sched.step()
        loss = torch.tensor(stats.get("query_loss", float("nan")), device=self.device)
        n = max(1, len(batch))
        self.log("train/loss", loss, prog_bar=True, batch_size=n, sync_dist=True)
        for k, v in stats.items():
            if k != "query_loss":
                self.log(f"train/{k}", float(v), batch_size=n, sync_dist=True)
        self.log("train/outer_lr", sched.get_last_lr()[0], batch_size=n)
        every = self.hparams.train_metrics_every
        if every and batch and batch_idx % every == 0:
            before, after = self._score(batch[0])
            self.log("train/miou_before", before["miou"], batch_size=1)
            self.log("train/miou_after", after["miou"], prog_bar=True, batch_size=1)
        return loss

    # -- evaluation -------------------------------------------------------------------

    def _score(self, task: Task) -> tuple[dict[str, float], dict[str, float]]:
        """Scores of the meta-model before (0 steps) and after adaptation on one task."""
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                "few-shot evaluation adapts with gradients, which inference mode forbids; "
                "set `trainer.inference_mode: false` (the configs in configs/ do)"
            )
        was_training = self.learner.training
        self.learner.eval()
        hp = self.hparams
        before, _ = score_task(self.learner, task, 0, hp.num_classes, hp.ignore_index)
        after, _ = score_task(self.learner, task, hp.eval_steps, hp.num_classes, hp.ignore_index)
        self.learner.train(was_training)
        return before, after

    def _eval_step(self, batch: list[Task], prefix: str) -> None:
        for task in batch:
            before, after = self._score(task)
            self.log(f"{prefix}/miou_before", before["miou"], batch_size=1, sync_dist=True)
            self.log(
                f"{prefix}/miou_after", after["miou"], prog_bar=True, batch_size=1, sync_dist=True
            )
            self.log(f"{prefix}/accuracy_after", after["accuracy"], batch_size=1, sync_dist=True)
            self.log(f"{prefix}/kappa_after", after["kappa"], batch_size=1, sync_dist=True)

    def validation_step(self, batch: list[Task], batch_idx: int) -> None:
        """MIoU before and after adaptation on validation-region tasks."""
        self._eval_step(batch, "val")

    def test_step(self, batch: list[Task], batch_idx: int) -> None:
        """MIoU before and after adaptation on test-region tasks."""
        self._eval_step(batch, "test")
