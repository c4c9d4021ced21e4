from __future__ import annotations

import pytest
import torch
from torch import nn

from landcover.meta.alpha_maml import AlphaMAML
from landcover.meta.maml import MAML
from landcover.tasks.task import Task


def _task(d: int = 3, seed: int = 0) -> Task:
    g = torch.Generator().manual_seed(seed)
    xs, xq = (
        torch.randn(6, d, generator=g, dtype=torch.float64),
        torch.randn(8, d, generator=g, dtype=torch.float64),
    )
    w = torch.randn(d, 1, generator=g, dtype=torch.float64)
    return Task(xs, xs @ w, xq, xq @ w + 0.1)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()


def test_one_step_rate_update_matches_closed_form() -> None:
    model = nn.Linear(3, 1, bias=False).double()
    learner = AlphaMAML(model, nn.MSELoss(), inner_lr=0.1, steps=1, alpha_lr=0.5)
    task = _task()
    theta = model.weight.detach().clone()
    xs, ys, xq, yq = task.support_x, task.support_y, task.query_x, task.query_y
    g_s = 2 * (xs @ theta.T - ys).T @ xs / len(xs)  # grad of the support MSE at theta
    phi = theta - 0.1 * g_s
    g_q = 2 * (xq @ phi.T - yq).T @ xq / len(xq)  # grad of the query MSE at phi
    h = -(g_q * g_s).sum()
    result = learner.task_loss(task)
    assert result.metrics["hypergradient"] == pytest.approx(float(h), rel=1e-12)
    assert float(learner.alpha) == pytest.approx(0.1 - 0.5 * float(h), rel=1e-12)
    # The meta-gradient still flows after the rate update.
    result.loss.backward()
    assert model.weight.grad is not None and model.weight.grad.abs().sum() > 0


def test_multi_step_second_order_hypergradient_matches_finite_differences() -> None:
    torch.manual_seed(1)
    model = _mlp()
    learner = AlphaMAML(model, nn.MSELoss(), inner_lr=0.05, steps=3, alpha_lr=0.0)
    task = _task()
    h, _ = learner.hypergradient(task)
    eps = 1e-6

    def objective(alpha: float) -> float:
        ref = MAML(model, nn.MSELoss(), inner_lr=alpha, steps=3)
        return float(ref.task_loss(task, training=False).loss)

    fd = (objective(0.05 + eps) - objective(0.05 - eps)) / (2 * eps)
    assert float(h) == pytest.approx(fd, rel=1e-6)
    assert float(learner.alpha) == pytest.approx(0.05)  # alpha_lr = 0 freezes it


def test_first_order_hypergradient_uses_the_sum_of_inner_gradients() -> None:
    model = _mlp()
    learner = AlphaMAML(
        model, nn.MSELoss(), inner_lr=0.05, steps=3, first_order=True, alpha_lr=1e-2
    )
    task = _task(seed=3)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for _ in range(3):
        p = {n: v.requires_grad_() for n, v in params.items()}
        loss = nn.functional.mse_loss(
            torch.func.functional_call(model, p, (task.support_x,)), task.support_y
        )
        grads = dict(zip(p, torch.autograd.grad(loss, list(p.values()))))
        total = {n: total[n] + grads[n] for n in total}
        params = {n: p[n].detach() - 0.05 * grads[n] for n in p}
    p = {n: v.requires_grad_() for n, v in params.items()}
    q_loss = nn.functional.mse_loss(
        torch.func.functional_call(model, p, (task.query_x,)), task.query_y
    )
    g_q = dict(zip(p, torch.autograd.grad(q_loss, list(p.values()))))
    expected = -sum((g_q[n] * total[n]).sum() for n in total)
    result = learner.task_loss(task)
    assert result.metrics["hypergradient"] == pytest.approx(float(expected), rel=1e-10)
    assert result.metrics["inner_lr"] == pytest.approx(0.05 - 1e-2 * float(expected), rel=1e-12)


def test_evaluation_and_adapt_leave_the_rate_alone() -> None:
    learner = AlphaMAML(_mlp(), nn.MSELoss(), inner_lr=0.05, steps=2, alpha_lr=10.0)
    task = _task()
    learner.task_loss(task, training=False)
    learner.adapt(task.support_x, task.support_y)
    assert float(learner.alpha) == pytest.approx(0.05)
    assert "alpha" in learner.state_dict()
    for seed in range(5):  # a huge hyper-rate may push alpha down, never below zero
        learner.task_loss(_task(seed=seed))
        assert float(learner.alpha) >= 0.0


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="alpha_lr"):
        AlphaMAML(_mlp(), alpha_lr=-1.0)


def test_registered_under_its_name() -> None:
    from landcover.meta.registry import build_learner

    learner = build_learner("alphamaml", _mlp(), None)
    assert type(learner) is AlphaMAML and learner.name == "alphamaml"


def test_vmap_batch_uses_the_mean_hypergradient() -> None:
    model = _mlp()
    learner = AlphaMAML(model, nn.MSELoss(), inner_lr=0.05, steps=2, alpha_lr=0.0, vmap=True)
    tasks = [_task(seed=s) for s in range(3)]
    per_task = [float(learner.hypergradient(t)[0]) for t in tasks]
    stacked = [
        torch.stack([getattr(t, f) for t in tasks])
        for f in ("support_x", "support_y", "query_x", "query_y")
    ]
    learner.alpha_lr = 0.1
    loss, _ = learner.batched_meta_loss(*stacked)
    mean_h = sum(per_task) / 3
    assert learner.last_hypergradient == pytest.approx(mean_h, rel=1e-10)
    assert float(learner.alpha) == pytest.approx(0.05 - 0.1 * mean_h, rel=1e-12)
    loss.backward()  # the meta-gradient still flows
    assert model[0].weight.grad.abs().sum() > 0
