"""MAML++ switches: multi-step loss, derivative-order annealing, LSLR, cosine schedule."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from landcover.meta.registry import build_learner
from landcover.meta.schedule import cosine_outer_lr, lightning_scheduler, msl_weights
from tests.meta.linreg import linear_model, mse_grad, mse_hessian


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


def _steps(w, task, rates):
    """Inner iterates ``w_0 .. w_K`` of plain gradient descent on the support MSE."""
    out = [w]
    for r in rates:
        out.append(out[-1] - r * mse_grad(out[-1], task.support_x, task.support_y))
    return out


def test_multi_step_loss_is_the_weighted_sum_of_per_step_query_losses(task):
    """Value and meta-gradient of the MSL objective against the closed form.

    The weights at epoch 4 of 10 with 3 steps, from the paper's schedule (non-final weights
    ``1/3 - 4 * 1/30 = 0.2``, the final one ``1/3 + 4 * 2/30 = 0.6``), are written out here,
    not taken from :func:`msl_weights`.
    """
    alpha = 0.1
    weights = [0.2, 0.2, 0.6]
    assert msl_weights(3, 4) == pytest.approx(weights, rel=1e-12)
    learner = build_learner(
        "mamlpp",
        linear_model(),
        nn.MSELoss(),
        inner_lr=alpha,
        steps=3,
        lslr=False,
        first_order_epochs=0,
    )
    learner.on_epoch_start(4)
    w0 = learner.model.weight.detach().T.clone()
    ws = _steps(w0, task, [alpha] * 3)
    qx, qy = task.query_x, task.query_y
    expected = sum(wt * float(((qx @ w - qy) ** 2).mean()) for wt, w in zip(weights, ws[1:]))
    loss = learner.task_loss(task).loss
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-12)
    loss.backward()
    # d/dw0 of L_q(w_i) = J^i grad L_q(w_i) with J = I - alpha H (H symmetric)
    jac = torch.eye(3, dtype=torch.float64) - alpha * mse_hessian(task.support_x)
    grad = sum(
        wt * torch.linalg.matrix_power(jac, i + 1) @ mse_grad(w, qx, qy)
        for i, (wt, w) in enumerate(zip(weights, ws[1:]))
    )
    torch.testing.assert_close(learner.model.weight.grad.T, grad, rtol=1e-10, atol=1e-12)


def test_lslr_per_step_rates_and_extra_steps_reuse_the_last_rate(task):
    model = linear_model()
    learner = build_learner("mamlpp", model, nn.MSELoss(), inner_lr=0.1, steps=2).double()
    rates = torch.tensor([0.05, 0.2], dtype=torch.float64)
    with torch.no_grad():
        learner.lslr["weight"].copy_(rates)
    state = learner.adapt(task.support_x, task.support_y, steps=4)
    w0 = model.weight.detach().T.clone()
    w = _steps(w0, task, [0.05, 0.2, 0.2, 0.2])[-1]
    torch.testing.assert_close(state.params["weight"], w.T, rtol=1e-12, atol=1e-12)


def test_lslr_rate_gradients_match_the_closed_form(task):
    """``dL_q(w_2) / d alpha_k`` for two learned steps, second order (last-step loss).

    ``w_1 = w_0 - a_0 g(w_0)``, ``w_2 = w_1 - a_1 g(w_1)`` with ``g`` the support gradient
    and ``H`` its Hessian: ``dL/da_1 = -g_q(w_2) . g(w_1)`` and
    ``dL/da_0 = -g_q(w_2) . (I - a_1 H) g(w_0)``.
    """
    model = linear_model()
    learner = build_learner("mamlpp", model, nn.MSELoss(), inner_lr=0.1, steps=2).double()
    a0, a1 = 0.05, 0.2
    with torch.no_grad():
        learner.lslr["weight"].copy_(torch.tensor([a0, a1], dtype=torch.float64))
    learner.on_epoch_start(100)  # second order, last-step loss only
    learner.task_loss(task).loss.backward()
    w0 = model.weight.detach().T.clone()
    w1, w2 = _steps(w0, task, [a0, a1])[1:]
    sx, sy = task.support_x, task.support_y
    g_q = mse_grad(w2, task.query_x, task.query_y)
    h = mse_hessian(sx)
    d_a1 = -(g_q * mse_grad(w1, sx, sy)).sum()
    d_a0 = -(g_q * ((torch.eye(3, dtype=h.dtype) - a1 * h) @ mse_grad(w0, sx, sy))).sum()
    torch.testing.assert_close(
        learner.lslr["weight"].grad, torch.stack([d_a0, d_a1]), rtol=1e-10, atol=1e-12
    )


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
