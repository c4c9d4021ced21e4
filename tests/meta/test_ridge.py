import numpy as np
import torch
from torch import nn

from landcover.meta.ridge import RidgeHead, ridge_solve
from landcover.tasks.task import Task


def _numpy_ridge(x, y, lam):
    x, y = x.detach().numpy(), y.detach().numpy()
    return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)


def test_woodbury_and_primal_equal_independent_solution():
    for n, d in [(5, 12), (30, 8)]:
        x = torch.randn(n, d, dtype=torch.float64)
        y = torch.randn(n, 3, dtype=torch.float64)
        ref = _numpy_ridge(x, y, 0.7)
        for wood in (None, True, False):
            np.testing.assert_allclose(
                ridge_solve(x, y, 0.7, woodbury=wood).numpy(), ref, rtol=1e-9, atol=1e-10
            )


def test_head_predictions_equal_closed_form():
    enc = nn.Linear(6, 10).double()
    head = RidgeHead(enc, lam=0.5, scale=2.0, bias=0.3).double()
    sx, sy = torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 1])
    qx = torch.randn(3, 6, dtype=torch.float64)
    state = head.adapt(sx, sy)
    assert state.extras["woodbury"]  # 4 shots < 11 features
    feats = torch.cat([enc(sx), torch.ones(4, 1, dtype=torch.float64)], 1)
    # parameters were created in float32, compare with their exact float64 values
    lam, scale, bias = (float(v.detach()) for v in (head.lam, head.scale, head.bias))
    assert abs(lam - 0.5) < 1e-6
    w = _numpy_ridge(feats, nn.functional.one_hot(sy).double(), lam)
    qf = torch.cat([enc(qx), torch.ones(3, 1, dtype=torch.float64)], 1).detach().numpy()
    np.testing.assert_allclose(
        head.predict(state, qx).detach().numpy(), scale * qf @ w + bias, rtol=1e-8, atol=1e-9
    )


def test_gradient_through_solve_matches_finite_differences():
    y = torch.randn(4, 2, dtype=torch.float64)
    for shape in [(4, 7), (4, 3)]:
        x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        lam = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, b: ridge_solve(a, y, b), (x, lam))


def test_meta_gradient_reaches_lambda_scale_bias_and_encoder():
    enc = nn.Linear(6, 8)
    head = RidgeHead(enc)
    task = Task(
        torch.randn(6, 6), torch.tensor([0, 1, 2] * 2), torch.randn(3, 6), torch.tensor([0, 1, 2])
    )
    head.meta_backward([task])
    for p in [head.log_lam, head.scale, head.bias, enc.weight]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
