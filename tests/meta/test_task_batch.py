"""task_batch='grouped' equals the task loop: loss, every gradient, BatchNorm buffers (float64)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from landcover.meta.grouped import TaskBatch
from landcover.meta.registry import build_learner
from landcover.models import build_model
from landcover.tasks.task import Task
from tests.meta.linreg import linear_task, tanh_mlp
from tests.meta.toy import ToySeg, seg_task

CE = nn.CrossEntropyLoss(ignore_index=255)


def _unet(norm: str) -> nn.Module:
    return build_model("small_unet", 3, 3, norm=norm, width=4, depth=1).double()


def _seg_tasks(count: int = 3) -> list[Task]:
    return [seg_task(seed=s, n=2, size=8, dtype=torch.float64) for s in range(count)]


def _run(learner, tasks):
    stats = learner.meta_backward(tasks)
    grads = {k: p.grad.clone() for k, p in learner.named_parameters() if p.grad is not None}
    buffers = {k: b.clone() for k, b in learner.named_buffers()}
    return stats, grads, buffers


def _loop_and_grouped(name, model, tasks, loss_fn=CE, **options):
    out = []
    for mode in ("loop", "grouped"):
        learner = build_learner(name, copy.deepcopy(model), loss_fn, task_batch=mode, **options)
        out.append(_run(learner.double(), tasks))
    return out


CASES = [
    # (learner, model norm, options): every BatchNorm policy and learned rate the family has
    ("maml", "group", {}),
    ("fomaml", "batch", {}),  # transductive
    ("mamlpp", "batch", {"first_order_epochs": 0}),  # per_step BN + affine, LSLR, MSL
    ("mamlpp", "batch", {"first_order_epochs": 0, "bn": "transductive"}),
    ("mamlpp", "group", {"first_order_epochs": 5}),  # first-order phase of the annealing
    ("metasgd", "none", {}),  # per-element learned rates
]


@pytest.mark.parametrize(("name", "norm", "options"), CASES)
def test_grouped_step_equals_the_loop_on_a_unet(name, norm, options):
    tasks = _seg_tasks()
    model = _unet(norm)
    fresh = build_learner(name, copy.deepcopy(model), CE, steps=2, **options)
    before = {k: b.clone() for k, b in fresh.named_buffers()}
    (s_loop, g_loop, b_loop), (s_grp, g_grp, b_grp) = _loop_and_grouped(
        name, model, tasks, inner_lr=0.1, steps=2, **options
    )
    assert s_grp["query_loss"] == pytest.approx(s_loop["query_loss"], rel=1e-12)
    assert s_grp["accuracy"] == pytest.approx(s_loop["accuracy"], rel=1e-12)
    assert g_loop.keys() == g_grp.keys()
    for k in g_loop:
        assert g_loop[k].abs().max() > 0, k  # every meta-parameter gets a gradient
        torch.testing.assert_close(g_grp[k], g_loop[k], rtol=1e-9, atol=1e-12, msg=k)
    if name == "mamlpp":
        assert any(k.startswith("lslr.") for k in g_loop)  # learned rates are compared too
    for k in b_loop:
        torch.testing.assert_close(b_grp[k], b_loop[k], rtol=1e-12, atol=1e-14, msg=k)
    if fresh.bn.policy == "per_step":
        moved = [k for k in b_loop if "mean__" in k and not torch.equal(b_loop[k], before[k])]
        assert moved, "per-step running statistics were not updated"


def test_grouped_body_once_with_transductive_bn_equals_the_loop():
    tasks = _seg_tasks(2)
    opts = {"inner_lr": 0.2, "steps": 2, "adapt": ["head"]}
    (s_loop, g_loop, _), (s_grp, g_grp, _) = _loop_and_grouped(
        "anil", ToySeg(bn=True).double(), tasks, **opts
    )
    assert s_grp["query_loss"] == pytest.approx(s_loop["query_loss"], rel=1e-12)
    for k in g_loop:
        torch.testing.assert_close(g_grp[k], g_loop[k], rtol=1e-9, atol=1e-12, msg=k)


def test_grouped_linear_layers_equal_the_loop():
    tasks = [linear_task(d=2, seed=s) for s in range(3)]
    for t in tasks:
        t.support_y, t.query_y = t.support_y[:, :1], t.query_y[:, :1]
    (s_loop, g_loop, _), (s_grp, g_grp, _) = _loop_and_grouped(
        "mamlpp",
        tanh_mlp(2).double(),
        tasks,
        nn.MSELoss(),
        inner_lr=0.1,
        steps=3,
        first_order_epochs=0,
    )
    assert s_grp["query_loss"] == pytest.approx(s_loop["query_loss"], rel=1e-12)
    for k in g_loop:
        torch.testing.assert_close(g_grp[k], g_loop[k], rtol=1e-9, atol=1e-12, msg=k)


def test_grouped_refuses_learners_that_change_the_inner_loop():
    with pytest.raises(ValueError, match="task_batch='grouped' is not available for IMAML"):
        build_learner("imaml", ToySeg(), CE, task_batch="grouped")
    with pytest.raises(ValueError, match="task_batch must be one of"):
        build_learner("maml", ToySeg(), CE, task_batch="batched")


def test_grouped_tasks_of_different_shots_equal_the_loop():
    """A meta-batch mixing shot counts runs one group per shape; BN buffers in task order."""
    tasks = [seg_task(seed=s, n=1 + s % 2, size=8, dtype=torch.float64) for s in range(4)]
    opts = {"inner_lr": 0.1, "steps": 2, "first_order_epochs": 0}
    (s_loop, g_loop, b_loop), (s_grp, g_grp, b_grp) = _loop_and_grouped(
        "mamlpp", _unet("batch"), tasks, **opts
    )
    assert s_grp["query_loss"] == pytest.approx(s_loop["query_loss"], rel=1e-12)
    for k in g_loop:
        torch.testing.assert_close(g_grp[k], g_loop[k], rtol=1e-9, atol=1e-12, msg=k)
    for k in b_loop:
        torch.testing.assert_close(b_grp[k], b_loop[k], rtol=1e-12, atol=1e-14, msg=k)


def test_unknown_op_on_fast_weights_raises_instead_of_mixing_tasks():
    w = torch.randn(2, 3)
    with pytest.raises(NotImplementedError, match="cannot run"), TaskBatch(2, [w]):
        torch.mul(w, 2.0)
