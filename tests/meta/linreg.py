"""Tiny float64 problems with closed-form answers for the meta-learning tests."""

from __future__ import annotations

import torch
from torch import nn

from landcover.tasks.task import Task


def linear_task(d: int = 3, n_support: int = 6, n_query: int = 7, seed: int = 0) -> Task:
    g = torch.Generator().manual_seed(seed)
    w_true = torch.randn(d, 1, generator=g, dtype=torch.float64)
    sx = torch.randn(n_support, d, generator=g, dtype=torch.float64)
    qx = torch.randn(n_query, d, generator=g, dtype=torch.float64)
    noise = 0.1
    sy = sx @ w_true + noise * torch.randn(n_support, 1, generator=g, dtype=torch.float64)
    qy = qx @ w_true + noise * torch.randn(n_query, 1, generator=g, dtype=torch.float64)
    return Task(sx, sy, qx, qy)


def linear_model(d: int = 3) -> nn.Linear:
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.linspace(-0.5, 0.7, d, dtype=torch.float64).view(1, d))
    return model


def mse_grad(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of mean((x w - y)^2) w.r.t. the column vector w."""
    return 2.0 / x.shape[0] * x.T @ (x @ w - y)


def mse_hessian(x: torch.Tensor) -> torch.Tensor:
    return 2.0 / x.shape[0] * x.T @ x


def tanh_mlp(d_in: int = 2, hidden: int = 5) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, 1)).double()
