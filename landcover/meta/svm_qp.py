"""The differentiable QP behind MetaOptNet's SVM head (see :mod:`landcover.meta.svm_head`).

The Crammer-Singer dual over ``alpha`` ``(n, N)`` with Gram matrix ``K``::

    minimise  1/2 tr(alpha^T K alpha) + ridge/2 ||alpha||^2 - sum_i alpha[i, y_i]
    s.t.      alpha[i, k] <= C [k == y_i]     and     sum_k alpha[i, k] = 0.

**Solved to tolerance, differentiated implicitly** (no solver iteration is unrolled):

1. accelerated projected gradient (FISTA with adaptive restart, O'Donoghue & Candes 2015;
   the projection of a row onto ``{a <= u, sum(a) = 0}`` is exact) in float64 without
   autograd, until it converges or until a primal-dual active-set method (Hintermueller,
   Ito & Kunisch 2002) started from its current active set finds the exact optimum,
   which it does in a few dense KKT solves once the guess is close (FISTA alone is slow
   when the Gram matrix is ill-conditioned, as trained embeddings make it);
2. the KKT conditions on the final active set (stationarity on the free coordinates plus
   the row equalities) are solved once more *with* autograd: a dense solve when the free
   set is small, else conjugate gradients with the operator ``Z -> K Z + ridge Z`` and an
   adjoint solve in backward. Either way the gradient is exactly that of the implicit
   function defined by the KKT conditions (Amos & Kolter 2017, OptNet), valid wherever the
   active set is locally constant (strict complementarity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

#: Free-set size up to which KKT systems are solved densely.
DENSE_LIMIT = 700


@dataclass
class SVMSolution:
    """Result of :func:`solve_cs_svm_dual`.

    Attributes:
        alpha: Dual variables ``(n, N)``; differentiable w.r.t. the kernel (implicit).
        active: Boolean mask ``(n, N)`` of coordinates at their upper bound.
        iterations: Projected-gradient iterations used.
        residual: Projected-gradient residual (inf-norm) of the returned point.
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
    nxt = torch.cat(
        [breaks[:, 1:], torch.full((n, 1), float("inf"), dtype=v.dtype, device=v.device)], dim=1
    )
    valid = (tau > breaks) & (tau <= nxt)
    # Exactly one prefix is valid; under rounding ties fall back to the largest free prefix.
    fallback = ((tau > breaks).to(v.dtype) * j).argmax(dim=1)
    first = torch.where(valid.any(dim=1), valid.to(v.dtype).argmax(dim=1), fallback)
    t = tau.gather(1, first[:, None])
    active = (v - t) >= upper
    return torch.where(active, upper, v - t), active


def dense_kkt(
    kernel: Tensor, onehot: Tensor, upper: Tensor, active: Tensor, ridge: float
) -> tuple[Tensor, Tensor]:
    """KKT point on a fixed active set by one dense solve (differentiable by autograd).

    Returns:
        ``(alpha, nu)``: the dual variables with active coordinates at their bound, and one
        multiplier per row for the equality ``sum_k alpha[i, k] = 0``.
    """
    n, num_classes = onehot.shape
    idx = (~active).reshape(-1).nonzero().squeeze(1)
    rows, cols = idx // num_classes, idx % num_classes
    m = idx.numel()
    fixed = upper * active
    g_ff = kernel[rows][:, rows] * (cols[:, None] == cols[None, :]).to(kernel.dtype)
    g_ff = g_ff + ridge * torch.eye(m, dtype=kernel.dtype, device=kernel.device)
    e = (rows[None, :] == torch.arange(n, device=kernel.device)[:, None]).to(
        kernel.dtype
    )  # (n, m) row sums
    zeros = torch.zeros(n, n, dtype=kernel.dtype, device=kernel.device)
    lhs = torch.cat([torch.cat([g_ff, e.T], dim=1), torch.cat([e, zeros], dim=1)])
    rhs = torch.cat([onehot.reshape(-1)[idx] - (kernel @ fixed).reshape(-1)[idx], -fixed.sum(1)])
    sol = torch.linalg.solve(lhs, rhs)
    alpha = fixed.reshape(-1).index_put((idx,), sol[:m]).reshape(n, num_classes)
    return alpha, sol[m:]


def active_set_refine(
    kernel: Tensor, onehot: Tensor, upper: Tensor, active: Tensor, ridge: float, max_iter: int = 25
) -> tuple[Tensor, Tensor] | None:
    """Primal-dual active-set iterations from a guess; ``(alpha, active)`` or ``None``.

    Each iteration solves the KKT system on the current set, then frees active coordinates
    with a negative bound multiplier and fixes free ones above their bound; an unchanged
    set is the exact optimum. Gives up (``None``) on large free sets, singular systems or
    no convergence.
    """
    for _ in range(max_iter):
        if int((~active).sum()) > DENSE_LIMIT:
            return None
        try:
            alpha, nu = dense_kkt(kernel, onehot, upper, active, ridge)
        except RuntimeError:  # torch.linalg.LinAlgError: singular for this set
            return None
        lam = -(kernel @ alpha + ridge * alpha - onehot + nu[:, None])  # bound multipliers
        new = torch.where(active, lam > 0, alpha > upper)
        full = new.all(dim=1)  # a row needs one free coordinate (its bounds sum to C > 0)
        if full.any():
            pick = lam.masked_fill(~new, float("inf")).argmin(dim=1)
            new[full, pick[full]] = False
        if torch.equal(new, active):
            return alpha, active
        active = new
    return None


def free_set_solve(
    kernel: Tensor,
    rhs: Tensor,
    mask: Tensor,
    ridge: float,
    row_sums: Tensor,
    *,
    rtol: float = 1e-12,
) -> Tensor:
    """Conjugate-gradient solve of the KKT system restricted to the free coordinates.

    Finds ``Z`` (``(n, N)``, zero where ``mask`` is 0) with ``sum_k Z[i, k] = row_sums[i]``
    and ``(K Z + ridge Z - rhs)[i, k] = -nu_i`` on the free coordinates, by CG on the null
    space of the row sums, with the operator ``Z -> K Z + ridge Z`` (``K kron I`` is never
    formed).
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
    for _ in range(4 * max(int(mask.sum()), 1)):
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


class _KKTSolveCG(torch.autograd.Function):
    """KKT point on a fixed active set by CG; backward = adjoint solve (implicit gradient)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, kernel: Tensor, onehot: Tensor, upper: Tensor, active: Tensor, ridge: float
    ) -> Tensor:
        mask = (~active).to(kernel.dtype)
        fixed = upper * active
        alpha = free_set_solve(kernel, onehot - kernel @ fixed, mask, ridge, -fixed.sum(1)) + fixed
        ctx.save_for_backward(kernel, mask, alpha)
        ctx.ridge = ridge
        return alpha

    @staticmethod
    def backward(ctx: Any, grad_alpha: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        kernel, mask, alpha = ctx.saved_tensors
        # The KKT matrix is symmetric: adjoint solve, then d loss / d K = -Lambda alpha^T.
        lam = free_set_solve(kernel, grad_alpha, mask, ctx.ridge, torch.zeros_like(alpha[:, 0]))
        return -lam @ alpha.T, None, None, None, None


def kkt_solution(
    kernel: Tensor, onehot: Tensor, upper: Tensor, active: Tensor, ridge: float
) -> Tensor:
    """Differentiable KKT point on ``active``: dense for small free sets, else CG."""
    if int((~active).sum()) <= DENSE_LIMIT:
        return dense_kkt(kernel, onehot, upper, active, ridge)[0]
    return _KKTSolveCG.apply(kernel, onehot, upper, active, ridge)


def solve_cs_svm_dual(
    kernel: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    c: float = 0.1,
    ridge: float = 1.0,
    tol: float = 1e-8,
    max_iter: int = 3000,
    refine_every: int = 10,
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
        max_iter: Projected-gradient iteration cap.
        refine_every: Try the active-set method every this many iterations.

    Returns:
        The :class:`SVMSolution`; ``alpha`` has ``kernel``'s dtype and carries the implicit
        gradient w.r.t. ``kernel``.
    """
    if c <= 0 or ridge < 0 or tol <= 0 or max_iter < 1 or refine_every < 1:
        raise ValueError(
            "SVM QP needs c > 0, ridge >= 0, tol > 0, max_iter >= 1, refine_every >= 1; got "
            f"c={c}, ridge={ridge}, tol={tol}, max_iter={max_iter}, refine_every={refine_every}"
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
        step = 1.0 / max(float(torch.linalg.eigvalsh(kd).max().clamp_min(0.0)) + ridge, 1e-12)

        def value(a: Tensor) -> float:
            return float(
                0.5 * (a * (kd @ a)).sum() + 0.5 * ridge * (a * a).sum() - (a * onehot).sum()
            )

        def gradient_map(a: Tensor) -> tuple[Tensor, Tensor, float]:
            nxt, act = project_rows(a - step * (kd @ a + ridge * a - onehot), upper)
            return nxt, act, float((nxt - a).abs().max()) / step

        alpha = torch.zeros_like(onehot)
        y, t, f_prev = alpha.clone(), 1.0, value(alpha)
        residual, active, iterations = float("inf"), torch.zeros_like(onehot, dtype=torch.bool), 0
        for iterations in range(1, max_iter + 1):
            new, active, residual = gradient_map(y)  # residual: gradient mapping at y
            f_new = value(new)
            if f_new > f_prev:  # adaptive restart
                t, y = 1.0, alpha.clone()
                new, active, residual = gradient_map(y)
                f_new = value(new)
            if residual < tol:
                alpha = new
                break
            if iterations % refine_every == 0:
                found = active_set_refine(kd, onehot, upper, active, ridge)
                if found is not None:
                    found_res = gradient_map(found[0])[2]
                    if found_res < tol:
                        active, residual = found[1], found_res
                        break
            t_next = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
            y = new + ((t - 1.0) / t_next) * (new - alpha)
            alpha, t, f_prev = new, t_next, f_new
    out = kkt_solution(k64, onehot, upper, active, ridge).to(kernel.dtype)
    return SVMSolution(out, active, iterations, residual)
