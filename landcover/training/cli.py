"""``landcover train``: LightningCLI over the meta-learning module and the region data module.

Usage::

    landcover train --config configs/synthetic.yaml                 # fit (the default)
    landcover train fit --config configs/sen12ms.yaml --data.root D  # explicit sub-command
    landcover train fit --config configs/synthetic.yaml --ckpt_path last   # resume
    landcover train validate --config configs/synthetic.yaml --ckpt_path runs/x/last.ckpt
    landcover train test --config configs/synthetic.yaml --ckpt_path runs/x/last.ckpt

Defaults that meta-learning needs are set here rather than in every config: no inference
mode (adaptation at validation takes gradients), no automatic distributed sampler (the
data module splits each meta-batch across ranks itself) and a checkpoint callback that
always keeps ``last.ckpt`` in ``<default_root_dir>/checkpoints`` (``--ckpt_path last``
resumes from it). The band count and the class count of the model are linked to the data.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from landcover.training.callbacks import MetaCheckpoint
from landcover.training.data_checks import fit_warnings, split_lines
from landcover.training.datamodule import RegionTaskDataModule
from landcover.training.module import MetaLearningModule

#: LightningCLI sub-commands; any other first argument means ``fit``.
SUBCOMMANDS = ("fit", "validate", "test")

#: Trainer settings every meta-training run needs (configs may still override them).
TRAINER_DEFAULTS: dict[str, Any] = {
    "inference_mode": False,
    "use_distributed_sampler": False,
    "accelerator": "auto",
    "devices": 1,
    "log_every_n_steps": 5,
}


class MetaCLI(LightningCLI):
    """LightningCLI with the checkpoint callback and the data->model links."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """``fit``, ``validate`` and ``test`` (prediction is ``landcover predict``)."""
        return {k: v for k, v in LightningCLI.subcommands().items() if k in SUBCOMMANDS}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add the checkpoint callback's arguments and link band/class counts."""
        parser.add_lightning_class_args(MetaCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.every_n_epochs": 1,
                "checkpoint.save_top_k": 1,
                "checkpoint.monitor": "val/miou_after",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best-{epoch}-{step}",
            }
        )
        parser.link_arguments("data.num_bands", "model.in_channels", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.ignore_index", "model.ignore_index", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        """Put checkpoints under ``<default_root_dir>/checkpoints`` unless told otherwise."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if cfg.get("checkpoint") is not None and not cfg.checkpoint.get("dirpath"):
            root = cfg.trainer.get("default_root_dir") or os.getcwd()
            cfg.checkpoint.dirpath = os.path.join(str(root), "checkpoints")

    def before_fit(self) -> None:
        """Print the region split and every setting that does not fit the data."""
        dm = self.datamodule
        if not isinstance(dm, RegionTaskDataModule):
            return
        lines = split_lines(dm.train_regions, dm.val_regions, dm.test_regions)
        print("landcover train: region split\n  " + "\n  ".join(lines), file=sys.stderr)
        options = dict(getattr(self.model.hparams, "model_options", None) or {})
        for warning in fit_warnings(dm.train_regions, dm.hparams.tile_size, options):
            print(f"landcover train: warning: {warning}", file=sys.stderr)


def _given(args: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def time_budget_alone(args: list[str]) -> list[str]:
    """A time budget alone is the budget: add ``--trainer.max_epochs=-1`` if none is given.

    ``--trainer.max_time`` without ``max_epochs`` / ``max_steps`` on the command line means
    training until the time is up, whatever epoch count the config holds. Before, the
    config's ``max_epochs: 5`` ended the run long before the time was up unless the user
    raised it too; the outer rate's schedule follows the time budget
    (:mod:`landcover.training.schedule`).
    """
    if not _given(args, "--trainer.max_time"):
        return args
    if _given(args, "--trainer.max_epochs") or _given(args, "--trainer.max_steps"):
        return args
    print("landcover train: --trainer.max_time given alone: training until the time is up "
          "(the config's max_epochs is lifted; the outer rate anneals over the time)",
          file=sys.stderr)  # fmt: skip
    return [*args, "--trainer.max_epochs=-1"]


def build_cli(argv: list[str], run: bool = True) -> MetaCLI:
    """Build (and by default run) the CLI on ``argv`` (a sub-command is inserted if absent)."""
    args = list(argv)
    if not args or (args[0] not in SUBCOMMANDS and args[0] not in {"-h", "--help"}):
        args = ["fit", *args]
    args = time_budget_alone(args)
    with warnings.catch_warnings():
        # ``landcover train`` passes its own argv; LightningCLI warns when sys.argv differs.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return MetaCLI(
            MetaLearningModule,
            RegionTaskDataModule,
            args=args,
            run=run,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "landcover train"},
        )


def main(argv: list[str]) -> int:
    """Entry point of ``landcover train``."""
    try:
        build_cli(argv)
    except SystemExit as exc:  # argparse errors and --help
        return int(exc.code or 0) if isinstance(exc.code, int) else 1
    except (ValueError, KeyError, FileNotFoundError) as err:  # bad data or settings
        print(f"landcover train: {err}", file=sys.stderr)
        return 2
    return 0
