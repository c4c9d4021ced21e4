"""MAML / FOMAML meta-gradients against closed forms and finite differences (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landcover.meta.registry import build_learner
from landcover.tasks.task import Task
from tests.meta.linreg import linear_model, linear_task, mse_grad, mse_hessian, tanh_mlp


def _adapted_w(w, task, alpha, steps):
    for _ in range(steps):
        w = w - alpha * mse_grad(w, task.support_x, task.support_y)
    return w


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_maml_meta_gradient_is_product_of_jacobians_times_query_gradient(task, steps):
    alpha = 0.1
    model = linear_model()
    learner = build_learner("maml", model, nn.MSELoss(), inner_lr=alpha, steps=steps)
    learner.task_loss(task).loss.backward()
    w0 = model.weight.detach().T.clone()
    jac = torch.eye(3, dtype=torch.float64) - alpha * mse_hessian(task.support_x)
    g_q = mse_grad(_adapted_w(w0, task, alpha, steps), task.query_x, task.query_y)
    expected = torch.linalg.matrix_power(jac, steps) @ g_q
    torch.testing.assert_close(model.weight.grad.T, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 3])
def test_fomaml_gradient_is_query_gradient_at_adapted_weights(task, steps):
    alpha = 0.1
    model = linear_model()
    learner = build_learner("fomaml", model, nn.MSELoss(), inner_lr=alpha, steps=steps)
    learner.task_loss(task).loss.backward()
    w0 = model.weight.detach().T.clone()
    expected = mse_grad(_adapted_w(w0, task, alpha, steps), task.query_x, task.query_y)
    torch.testing.assert_close(model.weight.grad.T, expected, rtol=1e-10, atol=1e-12)
    # and it differs from the second-order gradient, so the test can tell them apart
    second = build_learner("maml", linear_model(), nn.MSELoss(), inner_lr=alpha, steps=steps)
    second.task_loss(task).loss.backward()
    assert not torch.allclose(second.model.weight.grad, model.weight.grad)


def test_adapted_weights_match_gradient_descent(task):
    model = linear_model()
    learner = build_learner("maml", model, nn.MSELoss(), inner_lr=0.05, steps=4)
    state = learner.adapt(task.support_x, task.support_y)
    expected = _adapted_w(model.weight.detach().T, task, 0.05, 4).T
    torch.testing.assert_close(state.params["weight"], expected, rtol=1e-12, atol=1e-12)
    assert state.step == 4
    # the module is never mutated
    torch.testing.assert_close(model.weight.detach(), linear_model().weight.detach())


def _flat_params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _set_flat(model, flat):
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()


@pytest.mark.parametrize("steps", [1, 3])
def test_second_order_maml_on_tanh_mlp_matches_finite_differences(steps):
    model = tanh_mlp()
    g = torch.Generator().manual_seed(3)
    sx, qx = torch.randn(8, 2, generator=g).double(), torch.randn(9, 2, generator=g).double()
    task = Task(sx, torch.sin(sx.sum(1, keepdim=True)), qx, torch.sin(qx.sum(1, keepdim=True)))
    learner = build_learner("maml", model, nn.MSELoss(), inner_lr=0.3, steps=steps)
    learner.task_loss(task).loss.backward()
    analytic = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    base = _flat_params(model)
    eps = 1e-6
    numeric = torch.zeros_like(base)
    for i in range(base.numel()):
        values = []
        for sign in (1.0, -1.0):
            flat = base.clone()
            flat[i] += sign * eps
            _set_flat(model, flat)
            values.append(learner.task_loss(task, training=False).query_loss)
        numeric[i] = (values[0] - values[1]) / (2 * eps)
    _set_flat(model, base)
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-8)
    fo = build_learner("fomaml", tanh_mlp(), nn.MSELoss(), inner_lr=0.3, steps=steps)
    fo.task_loss(task).loss.backward()
    fo_grad = torch.cat([p.grad.reshape(-1) for p in fo.model.parameters()])
    assert (fo_grad - numeric).abs().max() > 1e-4


def test_unused_parameters_get_zero_inner_gradient_and_no_error(task):
    class WithUnused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = linear_model()
            self.unused = nn.Linear(3, 4).double()

        def forward(self, x):
            return self.used(x)

    model = WithUnused()
    learner = build_learner("maml", model, nn.MSELoss(), inner_lr=0.1, steps=2)
    state = learner.adapt(task.support_x, task.support_y)
    torch.testing.assert_close(state.params["unused.weight"], model.unused.weight)
    learner.task_loss(task).loss.backward()
    assert model.unused.weight.grad is None or torch.all(model.unused.weight.grad == 0)
    assert model.used.weight.grad is not None


def test_vmap_meta_gradient_equals_task_loop():
    tasks = [linear_task(seed=s) for s in range(4)]
    loop = build_learner("maml", tanh_mlp(3), nn.MSELoss(), inner_lr=0.2, steps=2)
    batched = build_learner("maml", tanh_mlp(3), nn.MSELoss(), inner_lr=0.2, steps=2, vmap=True)
    stats_loop = loop.meta_backward(tasks)
    stats_vmap = batched.meta_backward(tasks)
    for a, b in zip(loop.parameters(), batched.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12)
    assert stats_loop["query_loss"] == pytest.approx(stats_vmap["query_loss"], rel=1e-9)
    preds = batched.batched_predict(
        torch.stack([t.support_x for t in tasks]),
        torch.stack([t.support_y for t in tasks]),
        torch.stack([t.query_x for t in tasks]),
        steps=3,
    )
    for t, p in zip(tasks, preds):
        state = loop.adapt(t.support_x, t.support_y, steps=3)
        torch.testing.assert_close(
            p, loop.predict(state, t.query_x).detach(), rtol=1e-9, atol=1e-12
        )


def test_classification_and_segmentation_losses_work():
    torch.manual_seed(0)
    clf = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    learner = build_learner("maml", clf, nn.CrossEntropyLoss(), inner_lr=0.1, steps=2)
    t = Task(
        torch.randn(6, 3, 2, 2),
        torch.randint(0, 3, (6,)),
        torch.randn(6, 3, 2, 2),
        torch.randint(0, 3, (6,)),
    )
    result = learner.task_loss(t)
    result.loss.backward()
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    seg = nn.Conv2d(3, 4, 3, padding=1)
    learner = build_learner(
        "fomaml", seg, nn.CrossEntropyLoss(ignore_index=255), inner_lr=0.1, steps=2
    )
    mask = torch.randint(0, 4, (2, 5, 5))
    mask[0, 0] = 255
    t = Task(torch.randn(2, 3, 5, 5), mask, torch.randn(2, 3, 5, 5), mask.clone())
    result = learner.task_loss(t)
    result.loss.backward()
    assert seg.weight.grad is not None and torch.isfinite(seg.weight.grad).all()
    assert "accuracy" in result.metrics
