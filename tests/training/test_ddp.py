"""Two CPU processes (gloo) give the same meta-gradient as one process on the same tasks."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from landcover.meta.registry import build_learner
from landcover.models import build_model
from landcover.tasks.task import Task
from landcover.training.ddp import all_reduce_meta_gradients, distributed_meta_backward
from landcover.training.tasksets import MetaBatchSampler

META_BATCH = 4


def _learner(kind: str = "maml") -> nn.Module:
    torch.manual_seed(0)
    if kind == "mamlpp_bn":  # per-step BatchNorm: running statistics that must agree
        model = build_model("small_unet", 3, 4, width=4, depth=1, norm="batch").double()
        loss = nn.CrossEntropyLoss(ignore_index=255)
        return build_learner("mamlpp", model, loss, steps=2, inner_lr=0.1, first_order_epochs=0)
    model = build_model("small_unet", 3, 4, width=4, depth=1, norm="none").double()
    return build_learner(
        "maml", model, nn.CrossEntropyLoss(ignore_index=255), steps=2, inner_lr=0.1
    )


def _task(index: int) -> Task:
    g = torch.Generator().manual_seed(index)
    k = 1 + index % 3  # tasks of a meta-batch differ in shots

    def xy(n):
        x = torch.randn(n, 3, 8, 8, generator=g, dtype=torch.float64)
        y = torch.randint(0, 4, (n, 8, 8), generator=g)
        y[:, 0, 0] = 255
        return x, y

    return Task(*xy(k), *xy(2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str, kind: str = "maml") -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        learner = _learner(kind)
        sampler = MetaBatchSampler(1, META_BATCH, rank, world)
        tasks = [_task(i) for i in sampler]
        distributed_meta_backward(learner, tasks)
        if rank == 0:
            torch.save({n: p.grad for n, p in learner.named_parameters()}, out)
        if kind != "maml":
            buffers = {n: b.clone() for n, b in learner.bn.named_buffers() if "__" in n}
            torch.save(buffers, f"{out}.bn{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_meta_gradient_equals_single_process(tmp_path):
    out = str(tmp_path / "grads.pt")
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)

    single = _learner()
    tasks = [_task(i) for i in MetaBatchSampler(1, META_BATCH, 0, 1)]
    single.meta_backward(tasks)
    ref = {n: p.grad for n, p in single.named_parameters()}
    assert set(ddp) == set(ref)
    for n, g in ref.items():
        assert g is not None and ddp[n] is not None, n
        assert g.abs().max() > 0, n  # a gradient that could differ
        torch.testing.assert_close(ddp[n], g, rtol=1e-10, atol=1e-12, msg=n)


@pytest.mark.slow
def test_two_process_per_step_bn_statistics_equal_single_process(tmp_path):
    """Per-step BN running statistics: equal on both ranks and to one process on the union."""
    out = str(tmp_path / "grads.pt")
    mp.spawn(_worker, args=(2, _free_port(), out, "mamlpp_bn"), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.bn{r}", weights_only=True) for r in range(2)]
    ddp_grads = torch.load(out, weights_only=True)

    single = _learner("mamlpp_bn")
    start = {n: b.clone() for n, b in single.bn.named_buffers() if "__" in n}
    single.meta_backward([_task(i) for i in MetaBatchSampler(1, META_BATCH, 0, 1)])
    ref = {n: b for n, b in single.bn.named_buffers() if "__" in n}
    assert ref and set(ranks[0]) == set(ref) == set(ranks[1])
    for n, b in ref.items():
        assert not torch.equal(b, start[n]), n  # the step moved every statistic
        torch.testing.assert_close(ranks[0][n], ranks[1][n], rtol=0, atol=0, msg=n)
        torch.testing.assert_close(ranks[0][n], b, rtol=1e-12, atol=1e-14, msg=n)
    for n, p in single.named_parameters():
        torch.testing.assert_close(ddp_grads[n], p.grad, rtol=1e-10, atol=1e-12, msg=n)


def test_sampler_shares_partition_the_meta_batch():
    single = list(MetaBatchSampler(3, 4, 0, 1))
    shares = [list(MetaBatchSampler(3, 4, r, 2)) for r in range(2)]
    assert sorted(shares[0] + shares[1]) == single
    for b in range(3):  # each meta-batch is split, not whole batches per rank
        assert (
            sorted(shares[0][2 * b : 2 * b + 2] + shares[1][2 * b : 2 * b + 2])
            == single[4 * b : 4 * b + 4]
        )
    s = MetaBatchSampler(2, 4)
    s.set_epoch(1)
    assert list(s) == list(range(8, 16))  # new tasks every epoch
    with pytest.raises(ValueError, match="divisible"):
        MetaBatchSampler(1, 3, 0, 2)


def test_all_reduce_is_identity_in_one_process():
    p = nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    assert all_reduce_meta_gradients([p], 5) == 5
    assert p.grad.tolist() == [3.0, 3.0]


@pytest.mark.slow
def test_lightning_two_process_step_equals_single_process(tmp_path):
    """One outer step through Lightning with MetaDDPStrategy (2 spawned CPU ranks, gloo)."""
    import lightning as L

    from landcover.training.datamodule import RegionTaskDataModule
    from landcover.training.ddp import MetaDDPStrategy
    from landcover.training.module import MetaLearningModule

    synth = {"regions": 3, "tiles_per_region": 5, "tile_size": 16, "seed": 0}

    def fit(devices, strategy):
        dm = RegionTaskDataModule(root=str(tmp_path / "data"), options=synth, val_regions=1,
                                  test_regions=0, shots=[1, 2], query=1, tile_size=16,
                                  val_shots=2, meta_batch_size=4, batches_per_epoch=1,
                                  augment="none")  # fmt: skip
        torch.manual_seed(0)
        net = {"width": 4, "depth": 1, "norm": "group"}
        module = MetaLearningModule(
            "maml", {"steps": 1, "inner_lr": 0.1}, "small_unet", net, dm.num_bands,
            dm.num_classes, train_metrics_every=0,
        )  # fmt: skip
        start = {k: v.clone() for k, v in module.learner.named_parameters()}
        trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=strategy, max_steps=1,
                            limit_val_batches=0, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, inference_mode=False,
                            use_distributed_sampler=False, enable_model_summary=False)  # fmt: skip
        trainer.fit(module, datamodule=dm)
        return start, dict(module.learner.named_parameters())

    start, single = fit(1, "auto")
    strategy = MetaDDPStrategy(start_method="spawn", process_group_backend="gloo")
    start2, ddp = fit(2, strategy)
    moved = 0
    for n, p in single.items():
        torch.testing.assert_close(start2[n], start[n])
        torch.testing.assert_close(ddp[n], p, rtol=1e-5, atol=1e-6, msg=n)
        moved += int(not torch.equal(p, start[n]))
    assert moved > 0  # the step really changed the weights
