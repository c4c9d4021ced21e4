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
from lightning.pytorch.trainer.states import TrainerStatus
from torch import Tensor, nn

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
    # NCCL reduces device tensors only: keep the bookkeeping on the parameters' device
    device = params[0].device if params else torch.device("cpu")
    total = torch.tensor([float(n_local)], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    reached = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=device)
    dist.all_reduce(reached, op=dist.ReduceOp.MAX)
    for p, was_reached in zip(params, reached.tolist()):
        if not was_reached:
            continue
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        g = g * n_local
        dist.all_reduce(g)
        p.grad = g / total.to(g.dtype)
    return int(total.item())


def all_reduce_running_stats(learner: Learner, before: dict[str, tuple[Tensor, Tensor]]) -> None:
    """Make per-step BatchNorm running statistics those of one process on the union.

    A training-mode forward folds its batch statistics ``s`` into an entry as
    ``r <- (1 - m) r + m s``, so after ``K`` updates from ``r0`` an entry holds
    ``(1 - m)^K r0 + d`` with ``d`` the rank's own contribution. Every rank starts the step
    from the same ``r0``; the single process runs rank 0's tasks, then rank 1's, ...
    (:class:`~landcover.training.tasksets.MetaBatchSampler` gives contiguous shares), so
    its result is ``(1 - m)^K r0 + sum_r (1 - m)^(K after rank r) d_r``: one all-gather of
    the update counts and one all-reduce per statistic. Policies without running
    statistics (transductive, GroupNorm, none) have nothing to reduce.

    Args:
        learner: The learner after this rank's ``meta_backward``.
        before: ``{layer: (means, vars)}`` copies taken before it (see
            :func:`distributed_meta_backward`).
    """
    bn = getattr(learner, "bn", None)
    if bn is None or _world() == 1 or not before:
        return
    stats = bn.running_stats()
    counts = bn.updates.clone()
    gathered = [torch.zeros_like(counts) for _ in range(_world())]
    dist.all_gather(gathered, counts)
    k_all = torch.stack(gathered).to(torch.float64)  # [world, entries]
    rank = dist.get_rank()
    k_own, k_later, k_total = k_all[rank], k_all[rank + 1 :].sum(0), k_all.sum(0)
    with torch.no_grad():
        for name, (means, variances, momentum) in stats.items():
            if momentum is None:
                raise ValueError(
                    f"BatchNorm layer {name!r} has momentum=None (cumulative average); "
                    "per-step statistics across ranks need a numeric momentum"
                )
            keep = 1.0 - momentum
            for buf, r0 in zip((means, variances), before[name]):
                r0 = r0.to(torch.float64)
                own = buf.to(torch.float64) - keep ** k_own[:, None] * r0
                contrib = keep ** k_later[:, None] * own
                dist.all_reduce(contrib)
                buf.copy_((keep ** k_total[:, None] * r0 + contrib).to(buf.dtype))
    bn.reset_updates()


def distributed_meta_backward(learner: Learner, tasks: Sequence[Task]) -> dict[str, float]:
    """``learner.meta_backward`` on this rank's tasks, then the cross-rank average.

    Gradients are averaged over all tasks of all ranks; per-step BatchNorm running
    statistics become those of one process on the union (:func:`all_reduce_running_stats`).

    Args:
        learner: The learner (``.grad`` is accumulated into its parameters).
        tasks: This rank's share of the meta-batch (may be empty on a rank when the
            meta-batch is smaller than the world).

    Returns:
        This rank's mean statistics (``query_loss`` and the learner's metrics).
    """
    bn = getattr(learner, "bn", None)
    before: dict[str, tuple[Tensor, Tensor]] = {}
    if bn is not None and _world() > 1:
        bn.reset_updates()
        before = {k: (m.clone(), v.clone()) for k, (m, v, _) in bn.running_stats().items()}
    stats = learner.meta_backward(tasks) if tasks else {}
    all_reduce_meta_gradients(learner.parameters(), len(tasks))
    all_reduce_running_stats(learner, before)
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

    def teardown(self) -> None:
        """Leave together: a barrier, then the process group is destroyed on every rank.

        Lightning destroys only NCCL groups (at exit). A gloo rank that exits while another
        rank still talks to it makes the other rank's gloo thread throw (``Connection closed
        by peer``), which aborts that process with SIGABRT after the work is done. After a
        normal end (status still ``RUNNING`` here) every rank waits for the others and closes
        its group; after an exception no barrier is entered, since the other ranks may never
        reach it.
        """
        trainer = getattr(self.lightning_module, "_trainer", None)
        finished = trainer is not None and trainer.state.status == TrainerStatus.RUNNING
        super().teardown()
        if finished and dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
