"""Checkpointing for resumable meta-training.

Lightning's ``ModelCheckpoint`` (2.6) writes ``last.ckpt`` only when it also saved a top-k
checkpoint at that step, so with a monitored score that did not improve the "last"
checkpoint silently stays behind, and a run killed later resumes from an older epoch.
:class:`MetaCheckpoint` keeps the best-by-score checkpoint *and* refreshes ``last.ckpt``
at the end of every checkpointing epoch, so ``--ckpt_path last`` always continues from the
last completed epoch.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class MetaCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is refreshed every checkpointing epoch."""

    def _refresh_last(self, trainer: L.Trainer) -> None:
        if not self.save_last or self._should_skip_saving_checkpoint(trainer):
            return
        every = self._every_n_epochs
        if every < 1 or (trainer.current_epoch + 1) % every:
            return
        if self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Top-k as usual, then make sure ``last.ckpt`` is this step's."""
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Top-k as usual, then make sure ``last.ckpt`` is this step's."""
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)
