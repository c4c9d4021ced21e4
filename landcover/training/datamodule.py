"""LightningDataModule over region task samplers: train, validation and test regions.

Regions come from one of four sources (``dataset``):

* ``"synthetic"``: procedural regions of :mod:`landcover.geo.synthetic`, generated into
  ``root`` (users' folder format) when ``root`` holds no regions yet; ``options`` holds
  generator knobs (checked by :mod:`landcover.training.data_options`);
* ``"folder"``: a user's own regions, one folder per region (:mod:`landcover.geo.folder`);
* ``"sen12ms"``: SEN12MS scenes, a region per (season, scene);
* ``"deepglobe"``: DeepGlobe Land Cover, regions by appearance clustering.

Regions are split (deterministically, by ``split_seed``) into held-out test regions,
validation regions and training regions; band statistics are computed on the training
regions only. Training meta-batches are split across ranks by
:class:`~landcover.training.tasksets.MetaBatchSampler`; each task is a pure function of
``(seed, index)``, so resumed and multi-process runs see the same tasks as a plain run.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

import lightning as L
from torch.utils.data import DataLoader, Sampler

from landcover.geo.normalize import BandStats, compute_band_stats
from landcover.geo.region import Region
from landcover.tasks.region import RegionTaskSampler
from landcover.tasks.task import Task
from landcover.training.data_options import check_reader_options
from landcover.training.tasksets import (
    MetaBatchSampler,
    TaskSet,
    collate_tasks,
    task_seed,
)

#: Valid values of ``dataset``.
DATASETS: tuple[str, ...] = ("synthetic", "folder", "sen12ms", "deepglobe")


def load_regions(
    dataset: str, root: str | Path, options: dict[str, Any] | None = None
) -> list[Region]:
    """Read (or, for ``synthetic``, generate then read) the regions of a dataset, by name.

    Args:
        dataset: One of :data:`DATASETS`.
        root: Dataset folder.
        options: Reader options (generator knobs for ``synthetic``).

    Returns:
        The regions, sorted by name.
    """
    opts = dict(options or {})
    root = Path(root)
    check_reader_options(dataset, root, opts)
    if dataset == "synthetic":
        from landcover.geo.folder import read_regions
        from landcover.geo.synthetic import SynthConfig, write_synthetic

        if not root.is_dir() or not any(root.iterdir()):
            write_synthetic(root, SynthConfig(**opts), progress=True)
        regions = read_regions(root)
    elif dataset in DATASETS:
        from landcover.geo.datasets import load_regions as read_dataset

        regions = read_dataset(root, kind=dataset, **opts)
    else:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {list(DATASETS)}")
    if not regions:
        raise ValueError(f"no regions found under {root} for dataset {dataset!r}")
    return sorted(regions, key=lambda r: r.name)


def dataset_split_names(
    dataset: str,
    root: str | Path,
    options: dict[str, Any] | None,
    val: int | list[str] | str,
    test: int | list[str] | str,
) -> tuple[int | list[str], int | list[str]]:
    """Resolve ``"dataset"`` in ``val`` / ``test`` to the dataset's own split names."""
    if "dataset" not in (val, test):
        for what, value in (("val_regions", val), ("test_regions", test)):
            if isinstance(value, str):
                raise ValueError(
                    f"{what} must be a count, a list of region names or 'dataset'; got {value!r}"
                )
        return val, test  # type: ignore[return-value]
    from landcover.geo.datasets import region_splits

    splits = region_splits(root, kind=dataset, **(options or {}))
    if splits is None:
        raise ValueError(
            f"dataset {dataset!r} has no split of its own; give val_regions/test_regions as "
            "counts or lists of region names"
        )
    return (
        splits.get("val", []) if val == "dataset" else val,  # type: ignore[return-value]
        splits.get("test", []) if test == "dataset" else test,  # type: ignore[return-value]
    )


def split_regions(
    regions: list[Region], val: int | list[str], test: int | list[str], seed: int = 0
) -> tuple[list[Region], list[Region], list[Region]]:
    """Split regions into (train, val, test) by counts (seeded shuffle) or by names."""
    by_name = {r.name: r for r in regions}

    def named(names: list[str], what: str) -> list[Region]:
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise KeyError(f"unknown {what} regions {unknown}; available: {sorted(by_name)}")
        return [by_name[n] for n in names]

    order = sorted(by_name)
    random.Random(seed).shuffle(order)
    test_r = named(test, "test") if isinstance(test, list) else [by_name[n] for n in order[:test]]
    rest = [n for n in order if n not in {r.name for r in test_r}]
    val_r = named(val, "validation") if isinstance(val, list) else [by_name[n] for n in rest[:val]]
    used = {r.name for r in test_r + val_r}
    train_r = [by_name[n] for n in sorted(by_name) if n not in used]
    if not train_r or not val_r:
        raise ValueError(
            f"{len(regions)} regions leave {len(train_r)} for training and {len(val_r)} for "
            f"validation ({len(test_r)} held out for test); both need at least one: lower "
            "val_regions/test_regions or add regions"
        )
    return train_r, val_r, test_r


class ShardSampler(Sampler[int]):
    """Fixed indices ``0..n-1``, rank ``r`` taking every ``world``-th (validation, test)."""

    def __init__(self, n: int, rank: int = 0, world: int = 1) -> None:
        self.indices = list(range(rank, n, world))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


class RegionTaskDataModule(L.LightningDataModule):
    """Few-shot segmentation tasks from train / validation / test regions.

    Args:
        dataset: One of :data:`DATASETS`.
        root: Dataset folder.
        options: Reader options (for ``synthetic``: generator knobs, e.g. ``regions``).
        val_regions: Number of validation regions, their names, or ``"dataset"`` for the
            dataset's own validation split (SEN12MS, DeepGlobe; see
            :func:`landcover.geo.datasets.region_splits`).
        test_regions: Number of held-out test regions, their names, or ``"dataset"`` for
            the dataset's own test split (for SEN12MS the scenes held out by Rußwurm et al.).
        split_seed: Seed of the region split.
        shots: Support tiles per training task: ``[low, high]`` draws k uniformly per task.
        query: Query tiles per task.
        tile_size: Square crop size (``None``: the tiles' own size).
        meta_batch_size: Tasks per outer step (over all ranks).
        batches_per_epoch: Outer steps per epoch.
        val_tasks: Validation tasks (fixed across epochs).
        val_shots: Support tiles of validation and test tasks.
        test_tasks: Test tasks (``landcover train test``).
        augment: Augmentation preset of training tiles (``"none"``, ``"flips"``,
            ``"affine"``; see :mod:`landcover.geo.augment`).
        seed: Seed of the task samplers.
        sparse_support: Sparse-label support sets for every split (``None`` = full masks,
            ``"strokes"``, ``"points"`` or a mapping of
            :class:`~landcover.tasks.sparse.SparseLabels` fields), to meta-train for
            adaptation from an analyst's painted strokes.
    """

    def __init__(
        self,
        dataset: Literal["synthetic", "folder", "sen12ms", "deepglobe"] = "synthetic",
        root: str = "data/synthetic",
        options: dict[str, Any] | None = None,
        val_regions: int | list[str] | str = 2,
        test_regions: int | list[str] | str = 4,
        split_seed: int = 0,
        shots: list[int] | None = None,
        query: int = 4,
        tile_size: int | None = None,
        meta_batch_size: int = 4,
        batches_per_epoch: int = 25,
        val_tasks: int = 16,
        val_shots: int = 5,
        test_tasks: int = 32,
        augment: str = "flips",
        seed: int = 0,
        sparse_support: str | dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        low, high = (shots or [1, 5])[0], (shots or [1, 5])[-1]
        if not 1 <= low <= high:
            raise ValueError(f"shots must be [low, high] with 1 <= low <= high; got {shots}")
        self.shot_range = (int(low), int(high))
        regions = load_regions(dataset, root, options)
        val_regions, test_regions = dataset_split_names(
            dataset, root, options, val_regions, test_regions
        )
        self.train_regions, self.val_regions, self.test_regions = split_regions(
            regions, val_regions, test_regions, split_seed
        )
        first = self.train_regions[0]
        self.scheme = first.scheme
        self.band_names = list(first.band_names)
        self.stats: BandStats = compute_band_stats(self.train_regions)
        self._samplers: dict[str, RegionTaskSampler] = {}

    # -- pickling (spawned DDP ranks, dataloader workers) ------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """Drop the regions (their tile loaders are closures); keep the split by name."""
        state = self.__dict__.copy()
        for key in ("train_regions", "val_regions", "test_regions", "_samplers"):
            state.pop(key, None)
        state["_split_names"] = {
            "train": [r.name for r in self.train_regions],
            "val": [r.name for r in self.val_regions],
            "test": [r.name for r in self.test_regions],
        }
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Re-read the regions from disk and restore the same split."""
        names = state.pop("_split_names")
        self.__dict__.update(state)
        hp = self.hparams
        by_name = {r.name: r for r in load_regions(hp.dataset, hp.root, hp.options)}
        self.train_regions = [by_name[n] for n in names["train"]]
        self.val_regions = [by_name[n] for n in names["val"]]
        self.test_regions = [by_name[n] for n in names["test"]]
        self._samplers = {}

    # -- description linked into the model and saved with checkpoints -------------------

    @property
    def num_bands(self) -> int:
        """Input bands."""
        return len(self.band_names)

    @property
    def num_classes(self) -> int:
        """Classes of the scheme."""
        return self.scheme.num_classes

    @property
    def ignore_index(self) -> int:
        """Mask value of unlabeled pixels."""
        return self.scheme.ignore_index

    @property
    def data_meta(self) -> dict[str, Any]:
        """What a model bundle needs to know about the data (JSON values)."""
        hp = self.hparams
        return {
            "dataset": hp.dataset,
            "band_names": self.band_names,
            "classes": self.scheme.to_dict(),
            "normalization": self.stats.to_dict(),
            "tile_size": hp.tile_size or self._tile_size(),
            "regions": {
                "train": [r.name for r in self.train_regions],
                "val": [r.name for r in self.val_regions],
                "test": [r.name for r in self.test_regions],
            },
        }

    def _tile_size(self) -> int:
        return int(self.train_regions[0][0]["image"].shape[-1])

    # -- samplers -------------------------------------------------------------------

    def sampler(self, split: str) -> RegionTaskSampler:
        """The task sampler of a split (``"train"``, ``"val"`` or ``"test"``)."""
        if split not in self._samplers:
            regions = {"train": self.train_regions, "val": self.val_regions}.get(
                split, self.test_regions
            )
            if split not in ("train", "val", "test"):
                raise KeyError(f"unknown split {split!r}; valid: ['train', 'val', 'test']")
            if not regions:
                raise ValueError(f"no {split} regions; set test_regions > 0 to test")
            hp = self.hparams
            low, high = self.shot_range
            self._samplers[split] = RegionTaskSampler(
                regions,
                shots=list(range(low, high + 1)) if split == "train" else hp.val_shots,
                query=hp.query,
                tile_size=hp.tile_size,
                stats=self.stats,
                augment=hp.augment if split == "train" else None,
                ignore_index=self.ignore_index,
                seed=task_seed(hp.seed, split, 0),
                sparse=hp.get("sparse_support"),  # subclasses may save fewer hparams
            )
        return self._samplers[split]

    def train_task(self, index: int) -> Task:
        """Training task ``index`` (its shot count drawn from ``shots`` by its index)."""
        low, high = self.shot_range
        k = random.Random(task_seed(self.hparams.seed, "shots", index)).randint(low, high)
        return self.sampler("train").task(index, shots=k)

    def eval_task(self, split: str, index: int, shots: int | None = None) -> Task:
        """Validation or test task ``index`` with ``shots`` support tiles."""
        return self.sampler(split).task(index, shots=shots or self.hparams.val_shots)

    # -- loaders --------------------------------------------------------------------

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def train_dataloader(self) -> DataLoader:
        """This rank's share of each meta-batch, new tasks every epoch."""
        rank, world = self._rank_world()
        hp = self.hparams
        sampler = MetaBatchSampler(hp.batches_per_epoch, hp.meta_batch_size, rank, world)
        return DataLoader(
            TaskSet(self.train_task, hp.batches_per_epoch * hp.meta_batch_size),
            batch_size=sampler.local_batch_size,
            sampler=sampler,
            collate_fn=collate_tasks,
        )

    def _eval_loader(self, split: str, n: int) -> DataLoader:
        rank, world = self._rank_world()
        return DataLoader(
            TaskSet(lambda i: self.eval_task(split, i), n),
            batch_size=1,
            sampler=ShardSampler(n, rank, world),
            collate_fn=collate_tasks,
        )

    def val_dataloader(self) -> DataLoader:
        """Fixed validation tasks (the same every epoch)."""
        return self._eval_loader("val", self.hparams.val_tasks)

    def test_dataloader(self) -> DataLoader:
        """Fixed test tasks on the held-out regions."""
        return self._eval_loader("test", self.hparams.test_tasks)
