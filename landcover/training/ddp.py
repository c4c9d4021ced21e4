"""Data-parallel meta-training: the tasks of a meta-batch are split across processes.

Each rank runs ``learner.meta_backward`` on its share of the meta-batch (one backward per
task), then the ranks average their gradients weighted by their task counts, so the step
every rank takes is the mean meta-gradient over the whole meta-batch, exactly as if one
process had seen all tasks. Lightning's DDP wrapper is not used: it expects one backward
per forward, while a meta-step runs one backward per task through the inner loop. The
strategy below keeps Lightning's process launching, process group and samplers, and only
replaces the wrapper by an initial broadcast of the parameters plus the explicit
all-reduce of :func:`all_reduce_meta_gradients` (the data-parallel scheme of Li et al.
2020, "PyTorch Distributed", applied per meta-batch).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from torch import nn

from landcover.meta.protocol import Learner
from landcover.tasks.task import Task


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_meta_gradients(params: Iterable[nn.Parameter], n_local: int) -> int:
    """Average ``.grad`` across ranks, weighting each rank by its number of tasks.

    On entry each rank's gradients are the mean over its ``n_local`` tasks; on exit every
    rank holds the mean over all tasks of all ranks. A parameter whose gradient is ``None``
    on every rank (never reached by the loss) keeps ``None``, as in a single process.

    Args:
        params: The learner's parameters (same order on every rank).
        n_local: Number of tasks this rank backpropagated.

    Returns:
        The total number of tasks over all ranks.
    """
    params = list(params)
    if _world() == 1:
        return n_local
    total = torch.tensor([float(n_local)], dtype=torch.float64)
    dist.all_reduce(total)
    reached = torch.tensor([p.grad is not None for p in params], dtype=torch.int32)
    dist.all_reduce(reached, op=dist.ReduceOp.MAX)
    for p, was_reached in zip(params, reached.tolist()):
        if not was_reached:
            continue
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        g = g * n_local
        dist.all_reduce(g)
        p.grad = g / total.to(g.dtype)
    return int(total.item())


def distributed_meta_backward(learner: Learner, tasks: Sequence[Task]) -> dict[str, float]:
    """``learner.meta_backward`` on this rank's tasks, then the cross-rank average.

    Args:
        learner: The learner (``.grad`` is accumulated into its parameters).
        tasks: This rank's share of the meta-batch (may be empty on a rank when the
            meta-batch is smaller than the world).

    Returns:
        This rank's mean statistics (``query_loss`` and the learner's metrics).
    """
    stats = learner.meta_backward(tasks) if tasks else {}
    all_reduce_meta_gradients(learner.parameters(), len(tasks))
    return stats


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy parameters and buffers of rank ``src`` to every rank (same starting point)."""
    if _world() == 1:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


class MetaDDPStrategy(DDPStrategy):
    """Lightning's DDP without the ``DistributedDataParallel`` wrapper.

    Use it in a config as ``trainer.strategy: landcover.training.ddp.MetaDDPStrategy``
    (``process_group_backend: gloo`` on CPU). The LightningModule reduces gradients itself
    with :func:`distributed_meta_backward`.
    """

    def configure_ddp(self) -> None:
        """Keep the module unwrapped and give every rank rank 0's parameters."""
        broadcast_module(self.model)
