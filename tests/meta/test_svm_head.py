from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch import nn

from landcover.meta.svm_head import MetaOptSVM, project_rows, solve_cs_svm_dual
from landcover.tasks.task import Task


def _clusters(n_per: int, n_cls: int, dim: int, spread: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(n_cls, dim, generator=g, dtype=torch.float64)
    x = centres.repeat_interleave(n_per, 0) + spread * torch.randn(
        n_per * n_cls, dim, generator=g, dtype=torch.float64
    )
    y = torch.arange(n_cls).repeat_interleave(n_per)
    return x, y


def _scipy_dual(kernel: np.ndarray, y: np.ndarray, n_cls: int, c: float, ridge: float):
    """Independent solver: SLSQP on the same dual QP."""
    n = len(y)
    onehot = np.eye(n_cls)[y]

    def f(z):
        a = z.reshape(n, n_cls)
        return 0.5 * np.sum(a * (kernel @ a)) + 0.5 * ridge * np.sum(a * a) - np.sum(a * onehot)

    def jac(z):
        a = z.reshape(n, n_cls)
        return (kernel @ a + ridge * a - onehot).ravel()

    cons = [
        {
            "type": "eq",
            "fun": lambda z: z.reshape(n, n_cls).sum(1),
            "jac": lambda z: np.kron(np.eye(n), np.ones(n_cls)),
        },
        {
            "type": "ineq",
            "fun": lambda z: (c * onehot).ravel() - z,
            "jac": lambda z: -np.eye(n * n_cls),
        },
    ]
    res = minimize(
        f,
        np.zeros(n * n_cls),
        jac=jac,
        constraints=cons,
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    assert res.success, res.message
    return res.x.reshape(n, n_cls)


def test_projection_is_feasible_and_optimal() -> None:
    v = torch.randn(6, 4, dtype=torch.float64)
    upper = 0.3 * torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3, 0, 1]), 4).double()
    p, active = project_rows(v, upper)
    assert torch.all(p <= upper + 1e-12)
    assert torch.allclose(p.sum(1), torch.zeros(6, dtype=torch.float64), atol=1e-12)
    assert torch.equal(active, p >= upper)
    # Optimality: no feasible random point is closer to v.
    for _ in range(200):
        q = torch.minimum(upper, torch.randn(6, 4, dtype=torch.float64))
        q = q - (q.sum(1, keepdim=True) / 4)  # shift keeps sum 0 but may break the bound
        ok = (q <= upper).all(1)
        d_p = ((p - v) ** 2).sum(1)
        d_q = ((q - v) ** 2).sum(1)
        assert torch.all(d_p[ok] <= d_q[ok] + 1e-12)


def test_hard_margin_on_separable_data() -> None:
    x, y = _clusters(3, 3, 16, 0.3)
    sol = solve_cs_svm_dual(x @ x.T, y, 3, c=1e3, ridge=0.0, tol=1e-11, max_iter=20000)
    a = sol.alpha
    onehot = torch.nn.functional.one_hot(y, 3).double()
    # Dual feasibility.
    assert torch.all(a <= 1e3 * onehot + 1e-9)
    assert torch.allclose(a.sum(1), torch.zeros(9, dtype=torch.float64), atol=1e-9)
    # Primal margins: w_y.x - w_k.x >= 1 for every k != y (separable => no slack).
    w = a.T @ x
    scores = x @ w.T
    margins = scores.gather(1, y[:, None]) - scores  # (n, N), 0 on the true class
    others = ~onehot.bool()
    assert margins[others].min() >= 1 - 1e-6
    # Complementary slackness: alpha[i, k] < 0 (k != y) only where the margin is exactly 1.
    tight = (a < -1e-7) & others
    assert tight.any()
    assert torch.allclose(margins[tight], torch.ones_like(margins[tight]), atol=1e-6)
    # The box is not binding on separable data with a large C.
    assert not sol.active[onehot.bool()].any()


@pytest.mark.parametrize(("c", "ridge"), [(0.1, 1.0), (0.05, 0.2)])
def test_matches_independent_qp_solver(c: float, ridge: float) -> None:
    x, y = _clusters(3, 4, 6, 2.0, seed=1)  # overlapping classes: box constraints bind
    kernel = x @ x.T
    ours = solve_cs_svm_dual(kernel, y, 4, c=c, ridge=ridge, tol=1e-12, max_iter=20000)
    ref = _scipy_dual(kernel.numpy(), y.numpy(), 4, c, ridge)
    assert np.allclose(ours.alpha.numpy(), ref, atol=1e-6)
    assert ours.active.any()  # the test exercises active constraints


def test_implicit_gradient_matches_finite_differences() -> None:
    x, y = _clusters(2, 3, 5, 1.5, seed=2)
    r = torch.randn(3, 5, dtype=torch.float64)

    def f(e: torch.Tensor) -> torch.Tensor:
        sol = solve_cs_svm_dual(e @ e.T, y, 3, c=0.2, ridge=0.5, tol=1e-10, max_iter=50000)
        return ((sol.alpha.T @ e) * r).sum()

    e = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (e,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_learner_trains_encoder_and_scale() -> None:
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6))
    learner = MetaOptSVM(enc)
    sx, sy = torch.randn(6, 5), torch.arange(3).repeat(2)
    task = Task(sx, sy, torch.randn(9, 5), torch.arange(3).repeat(3))
    result = learner.task_loss(task)
    result.loss.backward()
    assert learner.scale.grad is not None and learner.scale.grad.abs() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    state = learner.adapt(sx, sy)
    assert state.extras["weights"].shape == (3, 6) and not state.extras["weights"].requires_grad
    assert learner.predict(state, torch.randn(4, 5)).shape == (4, 3)


def test_learner_rejects_bad_labels() -> None:
    learner = MetaOptSVM(nn.Linear(3, 4))
    with pytest.raises(ValueError, match="integer"):
        learner.adapt(torch.randn(4, 3), torch.randn(4))
    with pytest.raises(ValueError, match="missing"):
        learner.adapt(torch.randn(4, 3), torch.tensor([0, 2, 2, 0]))
    with pytest.raises(ValueError, match="c > 0"):
        MetaOptSVM(nn.Linear(3, 4), c=0.0)


def test_registered_under_its_name() -> None:
    from landcover.meta.registry import build_learner

    learner = build_learner("metaoptnet_svm", nn.Linear(3, 4), None)
    assert type(learner) is MetaOptSVM and learner.name == "metaoptnet_svm"


def test_conjugate_gradient_kkt_path_matches_the_dense_one(monkeypatch) -> None:
    from landcover.meta import svm_qp

    x, y = _clusters(3, 3, 5, 1.5, seed=4)
    onehot = torch.nn.functional.one_hot(y, 3).double()
    sol = solve_cs_svm_dual(x @ x.T, y, 3, c=0.2, ridge=0.5, tol=1e-12)
    assert sol.active.any() and (~sol.active).sum() > 9

    def via_cg(e: torch.Tensor) -> torch.Tensor:
        return svm_qp._KKTSolveCG.apply(e @ e.T, onehot, 0.2 * onehot, sol.active, 0.5)

    def via_dense(e: torch.Tensor) -> torch.Tensor:
        return svm_qp.dense_kkt(e @ e.T, onehot, 0.2 * onehot, sol.active, 0.5)[0]

    e = x.clone().requires_grad_(True)
    assert torch.allclose(via_cg(e), via_dense(e), atol=1e-10)
    assert torch.autograd.gradcheck(via_cg, (e,), eps=1e-6, atol=1e-6, rtol=1e-5)
    monkeypatch.setattr(svm_qp, "DENSE_LIMIT", 0)  # the solver's own output then uses CG
    again = solve_cs_svm_dual(x @ x.T, y, 3, c=0.2, ridge=0.5, tol=1e-12)
    assert torch.allclose(again.alpha, sol.alpha, atol=1e-9)
