"""MetaOptNet's multi-class linear SVM head on learned embeddings (Lee et al. 2019).

Lee, Maji, Ravichandran, Soatto, "Meta-Learning with Differentiable Convex Optimization",
CVPR 2019. A shared encoder embeds the support set; a Crammer-Singer multi-class linear SVM
is fitted on the embeddings of each task and scores the query embeddings. The SVM is a
convex program, so the encoder is meta-learned by differentiating the SVM's solution with
respect to the embeddings.

The dual of the Crammer & Singer (2001) SVM, in the form MetaOptNet solves (their eq. 11,
with the ``+ridge * I`` MetaOptNet's code adds to the quadratic term), over
``alpha`` of shape ``(n, N)`` (``n`` support examples, ``N`` classes) is::

    minimise  1/2 tr(alpha^T K alpha) + ridge/2 ||alpha||^2 - sum_i alpha[i, y_i]
    s.t.      alpha[i, k] <= C * [k == y_i]     and     sum_k alpha[i, k] = 0,

with ``K = E E^T`` the support Gram matrix; the class weights are ``w_k = sum_i alpha[i, k]
e_i`` and a query ``q`` is scored ``scale * <w_k, e(q)>`` with a learned ``scale``.

**How it is solved and differentiated** (the issue asks to say which): a QP solved to
tolerance with gradients by implicit differentiation, not unrolled. In float64 and
without autograd, accelerated projected gradient (FISTA with adaptive restart; each row's
projection onto ``{a <= u, sum(a) = 0}`` is exact) runs until the active set (the
coordinates at their upper bound) settles; the KKT conditions restricted to the free
coordinates (stationarity plus the row equalities) are then solved exactly on that set,
which ends the solve as soon as the set is right. That KKT solve (conjugate gradients
with the operator ``Z -> K Z + ridge Z``, never forming ``K kron I``) is also the
differentiable output: its backward solves the adjoint system, which is exactly implicit
differentiation of the KKT conditions (Amos & Kolter 2017, OptNet), valid wherever the
active set is locally constant (strict complementarity). No solver iteration is unrolled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from landcover.meta.protocol import AdaptedState, Learner, TaskResult
from landcover.tasks.task import Task


@dataclass
class SVMSolution:
    """Result of :func:`solve_cs_svm_dual`.

    Attributes:
        alpha: Dual variables ``(n, N)``; differentiable w.r.t. the kernel (implicit).
        active: Boolean mask ``(n, N)`` of coordinates at their upper bound.
        iterations: Projected-gradient iterations used.
        residual: Projected-gradient residual (inf-norm) at the last iterate.
    """

    alpha: Tensor
    active: Tensor
    iterations: int
    residual: float


def project_rows(v: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
    """Euclidean projection of each row of ``v`` onto ``{a : a <= upper, sum(a) = 0}``.

    The projection is ``min(upper, v - tau)`` with the row's ``tau`` making the row sum to
    zero. Coordinate ``k`` is free (below its bound) iff ``tau > v_k - upper_k``, so the free
    set is a prefix of the sorted breakpoints ``v - upper``; ``tau`` is found exactly by
    trying every prefix (sort + cumulative sums, no iteration).

    Args:
        v: Points ``(n, N)``.
        upper: Upper bounds ``(n, N)`` whose rows sum to a positive number.

    Returns:
        ``(projection, active)`` where ``active`` marks coordinates clipped to ``upper``.
    """
    n, k = v.shape
    breaks, order = torch.sort(v - upper, dim=1)
    v_s, u_s = v.gather(1, order), upper.gather(1, order)
    j = torch.arange(1, k + 1, dtype=v.dtype, device=v.device)
    # tau_j with the j smallest breakpoints free: sum_{<=j} v + sum_{>j} u = j * tau_j.
    u_rest = u_s.sum(dim=1, keepdim=True) - u_s.cumsum(dim=1)
    tau = (v_s.cumsum(dim=1) + u_rest) / j
    nxt = torch.cat([breaks[:, 1:], torch.full((n, 1), float("inf"), dtype=v.dtype)], dim=1)
    valid = (tau > breaks) & (tau <= nxt)
    # Exactly one prefix is valid; under rounding ties fall back to the largest free prefix.
    free_ok = (tau > breaks).to(v.dtype) * j
    fallback = free_ok.argmax(dim=1)
    first = torch.where(valid.any(dim=1), valid.to(v.dtype).argmax(dim=1), fallback)
    t = tau.gather(1, first[:, None])
    active = (v - t) >= upper
    return torch.where(active, upper, v - t), active


def solve_cs_svm_dual(
    kernel: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    c: float = 0.1,
    ridge: float = 1.0,
    tol: float = 1e-8,
    max_iter: int = 3000,
    polish_every: int = 5,
) -> SVMSolution:
    """Solve the Crammer-Singer dual to tolerance; gradients by implicit differentiation.

    Args:
        kernel: Support Gram matrix ``(n, n)`` (any float dtype; solved in float64).
        labels: Support labels ``(n,)`` in ``[0, num_classes)``.
        num_classes: ``N``.
        c: Box constraint ``C`` (soft-margin penalty), > 0.
        ridge: Extra ``ridge * I`` on the quadratic term (>= 0; > 0 keeps the KKT system
            non-singular when the Gram matrix is rank deficient).
        tol: Stop when the projected-gradient residual (inf-norm) is below ``tol``.
        max_iter: Iteration cap.
        polish_every: When the active set has not changed for this many iterations, solve
            the KKT system on it exactly and jump there if that is better (finishes as
            soon as the active set is right).

    Returns:
        The :class:`SVMSolution`; ``alpha`` has ``kernel``'s dtype and carries the implicit
        gradient w.r.t. ``kernel``.
    """
    if c <= 0 or ridge < 0 or tol <= 0 or max_iter < 1:
        raise ValueError(
            f"SVM head needs c > 0, ridge >= 0, tol > 0, max_iter >= 1; "
            f"got c={c}, ridge={ridge}, tol={tol}, max_iter={max_iter}"
        )
    n = kernel.shape[0]
    if kernel.shape != (n, n) or labels.shape != (n,):
        raise ValueError(
            f"kernel must be (n, n) and labels (n,); got {tuple(kernel.shape)} and "
            f"{tuple(labels.shape)}"
        )
    k64 = kernel.double()
    onehot = F.one_hot(labels.long(), num_classes).double()
    upper = c * onehot
    with torch.no_grad():
        kd = k64.detach()
        lipschitz = float(torch.linalg.eigvalsh(kd).max().clamp_min(0.0)) + ridge
        step = 1.0 / max(lipschitz, 1e-12)

        def grad(a: Tensor) -> Tensor:
            return kd @ a + ridge * a - onehot

        def value(a: Tensor) -> float:
            return float(
                0.5 * (a * (kd @ a)).sum() + 0.5 * ridge * (a * a).sum() - (a * onehot).sum()
            )

        def gradient_map(a: Tensor) -> tuple[Tensor, Tensor, float]:
            nxt, act = project_rows(a - step * grad(a), upper)
            return nxt, act, float((nxt - a).abs().max()) / step

        alpha = torch.zeros_like(onehot)
        y, t, f_prev = alpha.clone(), 1.0, value(alpha)
        residual, active, iterations = float("inf"), torch.zeros_like(onehot, dtype=torch.bool), 0
        last_active, stable = active, 0
        for iterations in range(1, max_iter + 1):  # noqa: B007 (reported after the loop)
            new, active, residual = gradient_map(y)  # residual: gradient mapping at y
            f_new = value(new)
            if f_new > f_prev:  # adaptive restart (O'Donoghue & Candes 2015)
                t, y = 1.0, alpha.clone()
                new, active, residual = gradient_map(y)
                f_new = value(new)
            if residual < tol:
                alpha = new
                break
            stable = stable + 1 if torch.equal(active, last_active) else 0
            last_active = active
            if stable >= polish_every:  # active set settled: exact KKT solve on it
                stable = 0
                cand = _polish(kd, onehot, upper, active, ridge)
                if cand is not None:
                    _, cand_active, cand_res = gradient_map(cand)
                    if cand_res < tol:
                        alpha, active, residual = cand, cand_active, cand_res
                        break
                    f_cand = value(cand)
                    if f_cand < f_new:  # warm restart from the better point
                        alpha, y, t, f_prev = cand, cand.clone(), 1.0, f_cand
                        continue
            t_next = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
            y = new + ((t - 1.0) / t_next) * (new - alpha)
            alpha, t, f_prev = new, t_next, f_new
    return SVMSolution(
        _KKTSolve.apply(k64, onehot, upper, active, ridge).to(kernel.dtype),
        active,
        iterations,
        residual,
    )


def _polish(
    kernel: Tensor, onehot: Tensor, upper: Tensor, active: Tensor, ridge: float
) -> Tensor | None:
    """Feasible point from the KKT solve on a guessed active set (``None`` if it fails)."""
    cand = _KKTSolve.apply(kernel, onehot, upper, active, ridge)
    if not torch.isfinite(cand).all():
        return None
    return project_rows(cand, upper)[0]


def free_set_solve(
    kernel: Tensor,
    rhs: Tensor,
    mask: Tensor,
    ridge: float,
    row_sums: Tensor,
    *,
    rtol: float = 1e-12,
) -> Tensor:
    """Solve the equality-constrained KKT system restricted to the free coordinates.

    Finds ``Z`` (``(n, N)``, zero where ``mask`` is 0) with ``sum_k Z[i, k] = row_sums[i]``
    and ``(K Z + ridge Z - rhs)[i, k] = -nu_i`` on the free coordinates (one multiplier per
    row), by conjugate gradients on the null space of the row sums. The operator is
    ``Z -> K Z + ridge Z`` (that is ``(K kron I + ridge I)`` without forming it), so a solve
    costs a few dozen ``(n, n) @ (n, N)`` products.
    """
    count = mask.sum(dim=1, keepdim=True).clamp_min(1.0)

    def proj(v: Tensor) -> Tensor:
        v = v * mask
        return v - mask * v.sum(dim=1, keepdim=True) / count

    def op(z: Tensor) -> Tensor:
        return proj(kernel @ z + ridge * z)

    z0 = mask * row_sums[:, None] / count
    b = proj(rhs) - op(z0)
    d = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rs = float((r * r).sum())
    stop = (rtol * (1.0 + float(b.norm()))) ** 2
    for _ in range(max(int(mask.sum()), 1)):
        if rs <= stop:
            break
        ap = op(p)
        curv = float((p * ap).sum())
        if curv <= 0.0:  # singular direction (ridge = 0 and a rank-deficient kernel)
            break
        a = rs / curv
        d, r = d + a * p, r - a * ap
        rs_new = float((r * r).sum())
        p, rs = r + (rs_new / rs) * p, rs_new
    return z0 + d


class _KKTSolve(torch.autograd.Function):
    """KKT solution on a fixed active set; backward = implicit differentiation (adjoint)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, kernel: Tensor, onehot: Tensor, upper: Tensor, active: Tensor, ridge: float
    ) -> Tensor:
        mask = (~active).to(kernel.dtype)
        fixed = upper * active  # active coordinates sit at their (kernel-independent) bound
        z = free_set_solve(kernel, onehot - kernel @ fixed, mask, ridge, -fixed.sum(dim=1))
        alpha = z + fixed
        ctx.save_for_backward(kernel, mask, alpha)
        ctx.ridge = ridge
        return alpha

    @staticmethod
    def backward(ctx: Any, grad_alpha: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        kernel, mask, alpha = ctx.saved_tensors
        # Adjoint of the (symmetric) KKT system, then d loss / d K = -Lambda alpha^T.
        lam = free_set_solve(kernel, grad_alpha, mask, ctx.ridge, torch.zeros_like(alpha[:, 0]))
        return -lam @ alpha.T, None, None, None, None


class MetaOptSVM(Learner):
    """Linear SVM head on a meta-learned encoder (MetaOptNet-SVM, Lee et al. 2019).

    Args:
        encoder: Embedding network ``x -> (n, ...)``; outputs are flattened to ``(n, d)``.
        loss_fn: Query loss on logits; cross-entropy by default.
        c: SVM box constraint (MetaOptNet uses 0.1).
        ridge: Diagonal added to the dual's quadratic term (MetaOptNet's code adds 1.0).
        tol: Solver tolerance on the projected-gradient residual.
        max_iter: Solver iteration cap.
        scale: Initial value of the learned logit scale.
    """

    def __init__(
        self,
        encoder: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        c: float = 0.1,
        ridge: float = 1.0,
        tol: float = 1e-4,
        max_iter: int = 3000,
        scale: float = 1.0,
    ) -> None:
        super().__init__(loss_fn if loss_fn is not None else nn.CrossEntropyLoss())
        if c <= 0 or ridge < 0:
            raise ValueError(f"MetaOptSVM needs c > 0 and ridge >= 0; got c={c}, ridge={ridge}")
        self.encoder = encoder
        self.c, self.ridge, self.tol, self.max_iter = c, ridge, tol, max_iter
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def embed(self, x: Tensor) -> Tensor:
        """Flattened embeddings ``(n, d)``."""
        return self.encoder(x).flatten(1)

    def adapt(
        self,
        support_x: Tensor,
        support_y: Tensor,
        *,
        steps: int | None = None,
        create_graph: bool = False,
    ) -> AdaptedState:
        """Fit the SVM on the support embeddings (``steps`` is ignored: no inner loop)."""
        if support_y.dtype not in (torch.int64, torch.int32) or support_y.dim() != 1:
            raise ValueError(
                "MetaOptSVM classifies: support_y must be a 1-D integer tensor of labels; "
                f"got dtype {support_y.dtype} and shape {tuple(support_y.shape)}"
            )
        num_classes = int(support_y.max()) + 1
        missing = set(range(num_classes)) - set(support_y.tolist())
        if missing:
            raise ValueError(
                "labels must be 0..N-1 with every class in the support set; "
                f"missing {sorted(missing)}"
            )
        with torch.set_grad_enabled(create_graph):
            emb = self.embed(support_x)
            sol = solve_cs_svm_dual(
                emb @ emb.T,
                support_y,
                num_classes,
                c=self.c,
                ridge=self.ridge,
                tol=self.tol,
                max_iter=self.max_iter,
            )
            weights = sol.alpha.T @ emb  # (N, d)
        state = AdaptedState(
            extras={
                "weights": weights,
                "alpha": sol.alpha,
                "solver_iterations": sol.iterations,
                "solver_residual": sol.residual,
            }
        )
        return state if create_graph else state.detached()

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Logits ``scale * <w_k, e(x)>``, shape ``(len(x), N)``."""
        return self.scale * (self.embed(x) @ state.extras["weights"].T)

    def task_loss(self, task: Task, *, training: bool = True) -> TaskResult:
        """Query cross-entropy after fitting the SVM on the support set."""
        state = self.adapt(task.support_x, task.support_y, create_graph=training)
        logits = self.predict(state, task.query_x)
        loss = self.loss_fn(logits, task.query_y)
        acc = float((logits.argmax(dim=1) == task.query_y).float().mean())
        return TaskResult(
            loss=loss,
            query_loss=float(loss.detach()),
            metrics={
                "accuracy": acc,
                "solver_iterations": float(state.extras["solver_iterations"]),
            },
            state=None,
        )
