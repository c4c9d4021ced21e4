"""Closed-form ridge-regression head on learned embeddings (R2-D2).

Bertinetto, Henriques, Torr & Vedaldi, "Meta-learning with differentiable closed-form
solvers", ICLR 2019.

Per task the support embeddings ``X`` (``n x d``, with a column of ones for the bias) are
regressed onto one-hot labels ``Y`` (``n x N``) in closed form,

    W = (X^T X + lambda I)^{-1} X^T Y          (primal, d x d system)
      = X^T (X X^T + lambda I)^{-1} Y          (Woodbury, n x n system)

and the two are the same matrix; the Woodbury form is used when there are fewer shots
than features (``n < d``, the usual few-shot case), which makes the solve ``O(n^3)``
instead of ``O(d^3)`` (the paper's eq. 5-6). Query logits are ``alpha * X_q W + beta``
with a learned scale ``alpha`` and bias ``beta`` (the paper's "adjust" layer), and the
regulariser ``lambda`` is meta-learned too (kept positive through its logarithm). The
whole head is differentiated through the linear solve by autograd
(``torch.linalg.solve``), so the encoder, ``lambda``, ``alpha`` and ``beta`` receive exact
meta-gradients.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from landcover.meta.feature_classifier import FeatureClassifier
from landcover.meta.protocol import AdaptedState


def ridge_solve(
    x: Tensor, y: Tensor, lam: Tensor | float, *, woodbury: bool | None = None
) -> Tensor:
    """Ridge-regression weights ``argmin_W ||X W - Y||^2 + lam ||W||^2``.

    Args:
        x: Inputs ``(n, d)`` (append a ones column yourself for a bias).
        y: Targets ``(n, m)``.
        lam: Regulariser, positive.
        woodbury: Force the ``n x n`` (True) or ``d x d`` (False) system; ``None`` picks
            the smaller one.

    Returns:
        ``W`` of shape ``(d, m)``, differentiable w.r.t. ``x``, ``y`` and ``lam``.
    """
    n, d = x.shape
    if woodbury is None:
        woodbury = n < d
    if woodbury:
        gram = x @ x.T + lam * torch.eye(n, dtype=x.dtype, device=x.device)
        return x.T @ torch.linalg.solve(gram, y)
    gram = x.T @ x + lam * torch.eye(d, dtype=x.dtype, device=x.device)
    return torch.linalg.solve(gram, x.T @ y)


def _with_ones(x: Tensor) -> Tensor:
    return torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)


class RidgeHead(FeatureClassifier):
    """R2-D2: ridge-regression head on a meta-learned encoder.

    Args:
        encoder: Embedding network; ``embed(x)`` when it has one, else ``encoder(x)``;
            outputs are flattened to ``(n, d)``.
        loss_fn: Query loss on logits; cross-entropy by default.
        lam: Initial regulariser ``lambda`` (learned, log-parametrised).
        scale: Initial output scale ``alpha`` (learned).
        bias: Initial output bias ``beta`` (learned).
        learn_lambda: Meta-learn ``lambda`` (as in the paper) or keep it fixed.
    """

    def __init__(
        self,
        encoder: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        lam: float = 1.0,
        scale: float = 10.0,
        bias: float = 0.0,
        learn_lambda: bool = True,
    ) -> None:
        if lam <= 0:
            raise ValueError(f"ridge lambda must be > 0; got {lam}")
        super().__init__(encoder, loss_fn)
        log_lam = torch.tensor(math.log(lam))
        if learn_lambda:
            self.log_lam = nn.Parameter(log_lam)
        else:
            self.register_buffer("log_lam", log_lam)
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.bias = nn.Parameter(torch.tensor(float(bias)))

    @property
    def lam(self) -> Tensor:
        """The current regulariser ``lambda``."""
        return self.log_lam.exp()

    def adapt(
        self,
        support_x: Tensor,
        support_y: Tensor,
        *,
        steps: int | None = None,
        create_graph: bool = False,
    ) -> AdaptedState:
        """Solve the ridge regression of one-hot labels on the support embeddings."""
        if support_y.ndim != 1 or support_y.is_floating_point():
            raise ValueError(
                "RidgeHead classifies: support_y must be 1-D integer labels; got "
                f"{support_y.dtype} {tuple(support_y.shape)}"
            )
        with torch.set_grad_enabled(create_graph or torch.is_grad_enabled()):
            x = _with_ones(self.embed(support_x))
            y = F.one_hot(support_y, int(support_y.max()) + 1).to(x.dtype)
            weights = ridge_solve(x, y, self.lam.to(x.dtype))
        state = AdaptedState(extras={"weights": weights, "woodbury": x.shape[0] < x.shape[1]})
        return state if create_graph else state.detached()

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Logits ``alpha * [f(x), 1] W + beta``."""
        return self.scale * (_with_ones(self.embed(x)) @ state.extras["weights"]) + self.bias
