"""MAML++ switches: multi-step loss, derivative-order annealing, LSLR, cosine schedule."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from landcover.meta.registry import build_learner
from landcover.meta.schedule import cosine_outer_lr, lightning_scheduler, msl_weights
from tests.meta.linreg import linear_model, mse_grad


def test_msl_weights_anneal_towards_the_last_step():
    first = msl_weights(5, 0)
    assert first == pytest.approx([0.2] * 5)
    later = msl_weights(5, 8)
    assert sum(later) == pytest.approx(1.0)
    assert later[-1] > first[-1] and later[0] < first[0]
    assert msl_weights(5, 10) is None and msl_weights(1, 0) is None


def test_derivative_order_annealing_switches_from_first_to_second_order(task):
    def grad_at(epoch, name):
        model = linear_model()
        opts = {"inner_lr": 0.1, "steps": 2}
        if name == "mamlpp":
            opts |= {"first_order_epochs": 2, "multi_step_loss": False, "lslr": False}
        learner = build_learner(name, model, nn.MSELoss(), **opts)
        learner.on_epoch_start(epoch)
        learner.task_loss(task).loss.backward()
        return model.weight.grad.clone()

    torch.testing.assert_close(grad_at(0, "mamlpp"), grad_at(0, "fomaml"), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad_at(2, "mamlpp"), grad_at(0, "maml"), rtol=1e-12, atol=1e-14)


def test_multi_step_loss_is_the_weighted_sum_of_per_step_query_losses(task):
    learner = build_learner(
        "mamlpp", linear_model(), nn.MSELoss(), inner_lr=0.1, steps=3, lslr=False
    )
    learner.on_epoch_start(4)
    weights = msl_weights(3, 4)
    w = learner.model.weight.detach().T
    expected = 0.0
    for i in range(3):
        w = w - 0.1 * mse_grad(w, task.support_x, task.support_y)
        expected += weights[i] * float(((task.query_x @ w - task.query_y) ** 2).mean())
    assert float(learner.task_loss(task).loss.detach()) == pytest.approx(expected, rel=1e-12)


def test_lslr_per_step_rates_and_extra_steps_reuse_the_last_rate(task):
    model = linear_model()
    learner = build_learner("mamlpp", model, nn.MSELoss(), inner_lr=0.1, steps=2).double()
    with torch.no_grad():
        learner.lslr["weight"].copy_(torch.tensor([0.05, 0.2], dtype=torch.float64))
    state = learner.adapt(task.support_x, task.support_y, steps=4)
    w = model.weight.detach().T
    for rate in (0.05, 0.2, 0.2, 0.2):
        w = w - rate * mse_grad(w, task.support_x, task.support_y)
    torch.testing.assert_close(state.params["weight"], w.T, rtol=1e-12, atol=1e-12)
    learner.on_epoch_start(100)  # second order, last-step loss only
    learner.task_loss(task).loss.backward()
    assert learner.lslr["weight"].grad is not None and learner.lslr["weight"].grad.abs().sum() > 0


def test_cosine_outer_rate_anneals_to_min():
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = cosine_outer_lr(opt, total=10, min_lr=1e-5)
    lrs = []
    for _ in range(10):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[-1] == pytest.approx(1e-5) and all(a >= b for a, b in itertools.pairwise(lrs))
    config = lightning_scheduler(opt, total=10, interval="step")
    assert config["interval"] == "step" and hasattr(config["scheduler"], "step")
    with pytest.raises(ValueError):
        cosine_outer_lr(opt, total=0)
