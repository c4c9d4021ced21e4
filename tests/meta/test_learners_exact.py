"""Reptile, Meta-SGD, iMAML and CAVIA against closed forms and finite differences."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from landcover.meta.registry import build_learner
from landcover.tasks.task import Task
from tests.meta.linreg import linear_model, linear_task, mse_grad, mse_hessian, tanh_mlp


def test_reptile_update_equals_formula(task):
    alpha, eps, steps = 0.1, 0.5, 3
    model = linear_model()
    learner = build_learner("reptile", model, nn.MSELoss(), inner_lr=alpha, steps=steps)
    w0 = model.weight.detach().T.clone()
    phi = w0.clone()
    for _ in range(steps):
        phi = phi - alpha * mse_grad(phi, task.support_x, task.support_y)
    opt = torch.optim.SGD(learner.parameters(), lr=eps)
    opt.zero_grad()
    learner.meta_backward([task])
    opt.step()
    torch.testing.assert_close(
        model.weight.detach().T, w0 + eps * (phi - w0), rtol=1e-12, atol=1e-12
    )


def test_reptile_vmap_equals_loop():
    tasks = [linear_task(seed=s) for s in range(3)]
    a = build_learner("reptile", tanh_mlp(3), nn.MSELoss(), inner_lr=0.1, steps=2)
    b = build_learner("reptile", tanh_mlp(3), nn.MSELoss(), inner_lr=0.1, steps=2, vmap=True)
    a.meta_backward(tasks)
    b.meta_backward(tasks)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12)


def _fd(fn, tensor, eps=1e-6):
    grad = torch.zeros_like(tensor)
    flat = tensor.data.view(-1)
    for i in range(flat.numel()):
        old = float(flat[i])
        flat[i] = old + eps
        up = fn()
        flat[i] = old - eps
        down = fn()
        flat[i] = old
        grad.view(-1)[i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("steps", [1, 2])
def test_metasgd_rate_gradient_matches_finite_differences(steps):
    g = torch.Generator().manual_seed(5)
    sx, qx = torch.randn(8, 2, generator=g).double(), torch.randn(9, 2, generator=g).double()
    task = Task(sx, torch.cos(sx[:, :1]), qx, torch.cos(qx[:, :1]))
    learner = build_learner("metasgd", tanh_mlp(), nn.MSELoss(), inner_lr=0.2, steps=steps)
    learner.double()
    with torch.no_grad():  # distinct rates so a wrong index would show
        for r in learner.rates.values():
            r.add_(0.05 * torch.randn(r.shape, generator=g, dtype=r.dtype))
    learner.task_loss(task).loss.backward()
    for key, rate in learner.rates.items():
        numeric = _fd(lambda: learner.task_loss(task, training=False).query_loss, rate)
        torch.testing.assert_close(rate.grad, numeric, rtol=1e-5, atol=1e-8, msg=key)


def test_metasgd_step_uses_elementwise_rates(task):
    model = linear_model()
    learner = build_learner("metasgd", model, nn.MSELoss(), inner_lr=0.1, steps=1).double()
    with torch.no_grad():
        learner.rates["weight"].copy_(torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64))
    state = learner.adapt(task.support_x, task.support_y)
    w0 = model.weight.detach().T
    expected = w0 - torch.tensor([[0.1], [0.2], [0.3]], dtype=torch.float64) * mse_grad(
        w0, task.support_x, task.support_y
    )
    torch.testing.assert_close(state.params["weight"], expected.T)


@pytest.mark.parametrize("rule", ["base", "learned"])
def test_metasgd_extra_steps_rule(task, rule):
    model = linear_model()
    learner = build_learner("metasgd", model, nn.MSELoss(), inner_lr=0.1, steps=1, extra_steps=rule)
    with torch.no_grad():
        learner.rates["weight"].fill_(0.05)
    state = learner.adapt(task.support_x, task.support_y, steps=3)
    w = model.weight.detach().T
    for rate in (0.05, 0.1 if rule == "base" else 0.05, 0.1 if rule == "base" else 0.05):
        w = w - rate * mse_grad(w, task.support_x, task.support_y)
    torch.testing.assert_close(state.params["weight"], w.T)


def test_imaml_matches_exact_implicit_gradient_linear(task):
    """Reference at the closed-form proximal solution, not at the learner's inner solution.

    ``phi* = argmin L_s(phi) + lam/2 ||phi - theta||^2 = (H + lam I)^-1 (lam theta + 2/n X^T y)``
    and the implicit meta-gradient is ``(I + H / lam)^-1 grad L_q(phi*)`` (Rajeswaran et al.
    2019, eq. 4), so both the inner solver and the CG solve are checked.
    """
    lam = 2.0
    model = linear_model()
    theta = model.weight.detach().T.clone()
    learner = build_learner(
        "imaml", model, nn.MSELoss(), inner_lr=0.05, steps=400, lam=lam, cg_steps=10
    )
    learner.task_loss(task).loss.backward()
    x, y = task.support_x, task.support_y
    h = mse_hessian(x)
    eye = torch.eye(3, dtype=torch.float64)
    phi_star = torch.linalg.solve(h + lam * eye, lam * theta + 2.0 / x.shape[0] * x.T @ y)
    g_q = mse_grad(phi_star, task.query_x, task.query_y)
    exact = torch.linalg.solve(eye + h / lam, g_q)
    torch.testing.assert_close(model.weight.grad.T, exact, rtol=1e-6, atol=1e-10)
    phi = learner.adapt(x, y).params["weight"].detach().T
    torch.testing.assert_close(phi, phi_star, rtol=1e-5, atol=1e-9)


def test_imaml_matches_exact_implicit_gradient_tanh_mlp():
    """Reference at the proximal solution found independently (L-BFGS + Newton).

    The tanh MLP's proximal problem has no closed form, so ``phi*`` is solved here with
    L-BFGS and Newton steps on ``L_s(phi) + lam/2 ||phi - theta||^2``, never with the
    learner's own inner loop.
    """
    lam = 1.0
    g = torch.Generator().manual_seed(7)
    sx, qx = torch.randn(10, 2, generator=g).double(), torch.randn(9, 2, generator=g).double()
    task = Task(sx, torch.sin(sx[:, :1]), qx, torch.sin(qx[:, :1]))
    model = tanh_mlp()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    learner = build_learner(
        "imaml", model, nn.MSELoss(), inner_lr=0.1, steps=400, lam=lam, cg_steps=60
    )
    learner.task_loss(task).loss.backward()
    grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()])

    def unpack(flat):
        out, i = {}, 0
        for n, s in zip(names, shapes):
            k = int(torch.tensor(s).prod())
            out[n] = flat[i : i + k].view(s)
            i += k
        return out

    def loss_at(flat, x, y):
        return nn.functional.mse_loss(torch.func.functional_call(model, unpack(flat), (x,)), y)

    def prox(flat):
        return loss_at(flat, sx, task.support_y) + 0.5 * lam * ((flat - theta) ** 2).sum()

    phi = theta.clone().requires_grad_()
    opt = torch.optim.LBFGS(
        [phi], max_iter=500, tolerance_grad=1e-13, tolerance_change=0, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        value = prox(phi)
        value.backward()
        return value

    opt.step(closure)
    phi = phi.detach()
    for _ in range(3):  # Newton polish
        phi = phi - torch.linalg.solve(
            torch.autograd.functional.hessian(prox, phi),
            torch.autograd.functional.jacobian(prox, phi),
        )
    assert float(torch.autograd.functional.jacobian(prox, phi).norm()) < 1e-10
    hess = torch.autograd.functional.hessian(lambda f: loss_at(f, sx, task.support_y), phi)
    p = phi.clone().requires_grad_()
    g_q = torch.autograd.grad(loss_at(p, task.query_x, task.query_y), p)[0]
    exact = torch.linalg.solve(torch.eye(phi.numel(), dtype=torch.float64) + hess / lam, g_q)
    rel = (grad - exact).norm() / exact.norm()
    assert rel < 1e-6


def test_imaml_vmap_equals_loop():
    tasks = [linear_task(seed=s) for s in range(3)]
    opts = {"inner_lr": 0.1, "steps": 3, "lam": 1.5, "cg_steps": 4}
    a = build_learner("imaml", tanh_mlp(3), nn.MSELoss(), **opts)
    b = build_learner("imaml", tanh_mlp(3), nn.MSELoss(), vmap=True, **opts)
    stats_a, stats_b = a.meta_backward(tasks), b.meta_backward(tasks)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-8, atol=1e-11)
    assert stats_a["query_loss"] == pytest.approx(stats_b["query_loss"], rel=1e-9)


def test_cavia_adapts_only_the_context_and_its_gradient_matches_fd():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1 + 2, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    g = torch.Generator().manual_seed(2)
    sx, qx = torch.randn(6, 1, generator=g).double(), torch.randn(7, 1, generator=g).double()
    task = Task(sx, 2 * sx, qx, 2 * qx)
    learner = build_learner("cavia", model, nn.MSELoss(), context_dim=2, inner_lr=0.5, steps=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    state = learner.adapt(task.support_x, task.support_y)
    assert state.params == {}
    assert state.extras["context"].shape == (2,) and state.extras["context"].abs().sum() > 0
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[n])
    learner.task_loss(task).loss.backward()
    w = model[0].weight
    numeric = _fd(lambda: learner.task_loss(task, training=False).query_loss, w)
    torch.testing.assert_close(w.grad, numeric, rtol=1e-5, atol=1e-8)
    # images: context appended as constant channels
    conv = nn.Conv2d(3 + 2, 4, 1)
    learner = build_learner("cavia", conv, nn.CrossEntropyLoss(), context_dim=2, inner_lr=0.5)
    img = Task(
        torch.randn(2, 3, 4, 4),
        torch.randint(0, 4, (2, 4, 4)),
        torch.randn(2, 3, 4, 4),
        torch.randint(0, 4, (2, 4, 4)),
    )
    assert learner.predict(learner.adapt(img.support_x, img.support_y), img.query_x).shape == (
        2,
        4,
        4,
        4,
    )


def test_conjugate_gradient_solves_spd_and_truncates_on_negative_curvature():
    from landcover.meta.imaml import conjugate_gradient

    g = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    exact = torch.linalg.solve(a, b)
    for tol in (1e-12, None):
        torch.testing.assert_close(conjugate_gradient(lambda v: a @ v, b, iters=30, tol=tol), exact)
    indefinite = torch.diag(torch.tensor([1.0, -3.0], dtype=torch.float64))
    rhs = torch.tensor([1.0, 1.0], dtype=torch.float64)
    x = conjugate_gradient(lambda v: indefinite @ v, rhs, iters=5, tol=None)
    assert torch.isfinite(x).all() and float(x @ rhs) > 0  # still a descent direction


def test_conjugate_gradient_never_returns_worse_than_the_first_order_direction():
    """Near-zero positive curvature on an indefinite ``A`` must not blow the solve up."""
    from landcover.meta.imaml import conjugate_gradient

    a = torch.diag(torch.tensor([1.0, -0.999], dtype=torch.float64))
    b = torch.tensor([1.0, 1.0], dtype=torch.float64)
    # plain CG's first step is alpha = b.b / b.A.b = 2000: x = 2000 b, residual ~ 2800
    for tol in (1e-12, None):
        x = conjugate_gradient(lambda v: a @ v, b, iters=5, tol=tol)
        fallback_residual = float((b - a @ b).norm())
        assert float((b - a @ x).norm()) <= fallback_residual + 1e-12
        assert float(x.norm()) <= 10 * float(b.norm())
        assert float(x @ b) > 0


@pytest.mark.parametrize("vmap", [False, True])
def test_imaml_inner_solver_converges_where_a_fixed_step_diverges(vmap):
    """Curvature far above 2 / inner_lr: plain descent diverges, iMAML's solver must not.

    The proximal problem of linear regression has the closed-form solution
    ``phi* = (H + lam I)^-1 (lam theta + 2/n X^T y)``.
    """
    lam, rate = 1.0, 0.5
    base = linear_task(seed=3)
    scaled = Task(10 * base.support_x, base.support_y, base.query_x, base.query_y)
    h = mse_hessian(scaled.support_x)
    assert float(torch.linalg.eigvalsh(h + lam * torch.eye(3, dtype=h.dtype)).max()) > 2 / rate
    model = linear_model()
    theta = model.weight.detach().T.clone()
    rhs = lam * theta + 2.0 / scaled.support_x.shape[0] * scaled.support_x.T @ scaled.support_y
    exact = torch.linalg.solve(h + lam * torch.eye(3, dtype=h.dtype), rhs)

    def objective(w):
        return float(((scaled.support_x @ w - scaled.support_y) ** 2).mean()) + 0.5 * lam * float(
            ((w - theta) ** 2).sum()
        )

    plain = theta.clone()
    for _ in range(5):
        plain = plain - rate * (
            mse_grad(plain, scaled.support_x, scaled.support_y) + lam * (plain - theta)
        )
    assert objective(plain) > 1e3 * objective(theta)  # the fixed step blows up

    learner = build_learner("imaml", model, nn.MSELoss(), inner_lr=rate, lam=lam, vmap=vmap)
    values = []
    for steps in (0, 1, 2, 5, 20, 400):
        if vmap:
            sx, sy = scaled.support_x[None], scaled.support_y[None]
            learner.eval()
            with torch.no_grad():
                w = learner.batched_predict(sx, sy, torch.eye(3, dtype=h.dtype)[None], steps=steps)
            w = w[0]
        else:
            w = learner.adapt(scaled.support_x, scaled.support_y, steps=steps).params["weight"].T
        values.append(objective(w.detach()))
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(values))  # monotone
    torch.testing.assert_close(w.detach(), exact, rtol=1e-6, atol=1e-8)
