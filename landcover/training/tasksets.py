"""Indexable task sets and the sampler that splits meta-batches across ranks.

A task is a pure function of ``(seed, split, index)``: the data module never draws from
global random state, so a run resumed from a checkpoint, or run on another number of
processes, sees exactly the same meta-batches as an uninterrupted single-process run.
Training indices are offset by the epoch (``epoch * tasks_per_epoch + i``), so every epoch
brings new tasks; validation and test indices are fixed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

from torch.utils.data import Dataset, Sampler

from landcover.tasks.task import Task


def task_seed(seed: int, split: str, index: int) -> int:
    """A 63-bit seed for one task, independent across splits and indices."""
    digest = hashlib.blake2b(f"{seed}/{split}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class TaskSet(Dataset[Task]):
    """Tasks by index, made on demand by ``make(index) -> Task``.

    Args:
        make: Deterministic task factory.
        length: Nominal length (tasks per epoch); indices beyond it are valid too.
    """

    def __init__(self, make: Callable[[int], Task], length: int) -> None:
        if length < 1:
            raise ValueError(f"a task set needs at least one task; got length {length}")
        self.make = make
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Task:
        return self.make(int(index))


def collate_tasks(tasks: list[Task]) -> list[Task]:
    """Keep a meta-batch as a list of tasks (tasks may differ in shots and size)."""
    return list(tasks)


class MetaBatchSampler(Sampler[int]):
    """Yields this rank's share of each meta-batch, epoch after epoch.

    Global meta-batch ``b`` of epoch ``e`` holds the task indices
    ``e * n_batches * B + b * B + j`` for ``j < B``; rank ``r`` of ``world`` takes the
    contiguous block ``r * B / world <= j < (r + 1) * B / world``. A loader with
    ``batch_size = B // world`` over this sampler gives each rank its share; the union over
    ranks, rank after rank, is the single-process meta-batch in its order (which is what
    makes the all-reduced per-step BatchNorm statistics equal the single process's).

    Args:
        n_batches: Meta-batches per epoch.
        meta_batch_size: Tasks per global meta-batch ``B`` (divisible by ``world``).
        rank: This process's rank.
        world: Number of processes.
    """

    def __init__(self, n_batches: int, meta_batch_size: int, rank: int = 0, world: int = 1) -> None:
        if n_batches < 1 or meta_batch_size < 1:
            raise ValueError(
                f"need n_batches >= 1 and meta_batch_size >= 1; got {n_batches}, {meta_batch_size}"
            )
        if meta_batch_size % world:
            raise ValueError(
                f"meta_batch_size {meta_batch_size} must be divisible by the number of "
                f"processes {world} (tasks of a meta-batch are split evenly across ranks)"
            )
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside [0, {world})")
        self.n_batches = n_batches
        self.meta_batch_size = meta_batch_size
        self.rank = rank
        self.world = world
        self.epoch = 0

    @property
    def local_batch_size(self) -> int:
        """Tasks per rank and meta-batch."""
        return self.meta_batch_size // self.world

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_batches * self.local_batch_size

    def __iter__(self) -> Iterator[int]:
        size = self.n_batches * self.meta_batch_size
        base = self.epoch * size
        for b in range(self.n_batches):
            start = base + b * self.meta_batch_size
            local = self.local_batch_size
            for j in range(self.rank * local, (self.rank + 1) * local):
                yield start + j
