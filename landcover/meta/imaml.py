"""iMAML: implicit meta-gradients by conjugate gradient on the proximal inner problem.

Rajeswaran, Finn, Kakade & Levine 2019, "Meta-Learning with Implicit Gradients": the
task solution is ``phi* = argmin_phi L_s(phi) + lambda/2 ||phi - theta||^2`` (approximated
by ``steps`` gradient steps) and its meta-gradient is

    d L_q(phi*) / d theta = (I + H_s(phi*) / lambda)^-1 grad L_q(phi*),

with ``H_s`` the support-loss Hessian. The linear system is solved with ``cg_steps``
conjugate-gradient iterations using Hessian-vector products only, so memory does not grow
with the number of inner steps. :meth:`IMAML.task_loss` returns the surrogate
``sum(theta * stopgrad(v))`` whose gradient is that vector ``v``.
Step-count rule: any number of proximal gradient steps (see :meth:`IMAML._inner`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from landcover.meta.functional import (
    TensorDict,
    autograd_grads,
    ensure_grad,
    flatten,
    named_params,
    unflatten,
)
from landcover.meta.maml import MAML
from landcover.meta.protocol import TaskResult
from landcover.meta.stacking import task_metrics
from landcover.tasks.task import Task


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, *, iters: int, tol: float | None = 1e-12
) -> Tensor:
    """Solve ``A x = b`` for symmetric positive-definite ``A`` given ``x -> A x``.

    ``tol=None`` runs exactly ``iters`` iterations without data-dependent stopping (as
    needed under :func:`torch.func.vmap`); tiny denominators are guarded instead.

    The support-loss Hessian of a neural network is indefinite away from the inner
    problem's minimiser, so ``A = I + H / lambda`` may be too. Two safeguards keep the
    solve from amplifying the meta-gradient there (at an exact minimiser ``A`` is positive
    semi-definite and both are inactive):

    * the iteration is truncated at the first direction of non-positive curvature
      (``p^T A p <= 0``), as in Steihaug's truncated CG;
    * the returned iterate is the one with the smallest residual ``||b - A x||`` among the
      CG iterates and ``x = b`` (the first-order direction, whose residual ``b - A b`` the
      first matrix-vector product gives for free). On an indefinite ``A`` the CG residual
      can grow past ``||b||``; this returns the first-order direction instead of a
      direction blown up by a near-zero curvature.

    For a well-conditioned positive-definite ``A`` solved to tolerance this is plain CG.
    """
    tiny = torch.finfo(b.dtype).tiny
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = r.dot(r)
    best_x, best_rs = b, torch.full_like(rs, float("inf"))
    active = torch.ones((), dtype=torch.bool, device=b.device)
    for i in range(iters):
        if tol is not None and (float(rs) <= tol * tol or not bool(active)):
            break
        ap = matvec(p)
        if i == 0:  # p == b: the residual of the first-order candidate x = b
            fallback_r = b - ap
            best_rs = fallback_r.dot(fallback_r)
        curvature = p.dot(ap)
        active = active & (curvature > 0)
        alpha = torch.where(active, rs / (curvature + tiny), torch.zeros_like(rs))
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = r.dot(r)
        better = active & (rs_new < best_rs)
        best_x = torch.where(better, x, best_x)
        best_rs = torch.where(better, rs_new, best_rs)
        p = r + (rs_new / (rs + tiny)) * p
        rs = rs_new
    return best_x


class IMAML(MAML):
    """Implicit MAML (adapts every parameter).

    Args:
        model: The network.
        loss_fn: Task loss.
        lam: Proximal regularisation strength ``lambda``.
        cg_steps: Conjugate-gradient iterations for the implicit gradient.
        steps: Proximal inner gradient steps.
        **options: Other :class:`~landcover.meta.maml.MAML` options (no ``adapt`` subset).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        lam: float = 1.0,
        cg_steps: int = 5,
        steps: int = 5,
        **options: Any,
    ) -> None:
        if options.get("adapt") is not None:
            raise ValueError("iMAML adapts every parameter; remove the 'adapt' option")
        if options.get("proto_init"):
            raise ValueError(
                "iMAML's inner loop sets no prototypes; remove the 'proto_init' option "
                "(Proto-MAML is maml, fomaml or mamlpp with proto_init: true)"
            )
        if float(lam) <= 0:
            raise ValueError(f"lam must be > 0; got {lam}")
        options.update(first_order=True, body_once=False)
        super().__init__(model, loss_fn, steps=steps, **options)
        self.lam = float(lam)
        self.cg_steps = int(cg_steps)

    def _inner(
        self,
        meta: TensorDict,
        support_x: Tensor,
        support_y: Tensor,
        steps: int,
        *,
        create_graph: bool,
        training: bool,
        functional: bool = False,
        query: tuple[Any, Tensor] | None = None,
        prototypes: bool = True,
    ) -> tuple[TensorDict, list[Tensor]]:
        """Safeguarded gradient descent on the proximal objective of one task.

        ``F(phi) = L_s(phi) + lambda/2 ||phi - theta||^2`` is minimised from ``phi = theta``
        by steps ``phi - r grad F(phi)`` that are accepted only when ``F`` does not
        increase; a rejected step halves the task's rate ``r`` (starting at ``inner_lr``).
        A plain fixed-rate descent diverges on tasks whose curvature exceeds ``2 / r``
        (it did on the sinusoid benchmark) and the implicit gradient then describes no
        solution at all. Each step costs one forward+backward, like a plain step, because
        the gradient at an accepted candidate is the next step's gradient. Works under
        :func:`torch.func.vmap` (the accept test is a :func:`torch.where`). The inner loop
        is first order; ``create_graph`` and ``query`` are ignored, and so is
        ``prototypes`` (iMAML refuses ``proto_init``).
        """
        del create_graph, query, prototypes
        fast = self._init_fast(meta)
        if steps <= 0:
            return fast, []
        feats = self._encode(meta, support_x, training)
        anchor = {n: meta[n].detach() for n in fast}

        def objective(fp: TensorDict) -> Tensor:
            loss = self.loss_fn(self._forward(meta, fp, feats, 0, training), support_y)
            prox = sum(((fp[n] - anchor[n]) ** 2).sum() for n in fp)
            return loss + 0.5 * self.lam * prox

        def value_and_grad(fp: TensorDict) -> tuple[Tensor, TensorDict]:
            detached = {n: t.detach() for n, t in fp.items()}
            if functional:
                grads, value = torch.func.grad_and_value(objective)(detached)
                return value, grads
            leaves = ensure_grad(detached)
            value = objective(leaves)
            return value.detach(), autograd_grads(value, leaves, create_graph=False)

        value, grads = value_and_grad(fast)
        rate = torch.full_like(value, self.inner_lr)
        for _ in range(steps):
            candidate = {n: p - rate * grads[n] for n, p in fast.items()}
            c_value, c_grads = value_and_grad(candidate)
            accept = c_value <= value  # False for NaN as well
            fast = {n: torch.where(accept, candidate[n], p) for n, p in fast.items()}
            grads = {n: torch.where(accept, c_grads[n], g) for n, g in grads.items()}
            value = torch.where(accept, c_value, value)
            rate = torch.where(accept, rate, 0.5 * rate)
        return fast, []

    def task_loss(self, task: Task, *, training: bool = True) -> TaskResult:
        """Surrogate whose gradient is the implicit meta-gradient (CG solve)."""
        meta = named_params(self.model)
        detached = {k: v.detach() for k, v in meta.items()}
        names = self.adapt_names
        with torch.enable_grad():
            fast = self._fast_weights(detached, task.support_x, task.support_y, training=training)
            phi = {n: fast[n].detach().requires_grad_() for n in names}
            out = self._forward(detached, phi, task.query_x, None, training)
            q_loss = self.loss_fn(out, task.query_y)
            g_q = flatten(autograd_grads(q_loss, phi, create_graph=False), names)
            if not training:
                loss = q_loss.detach()
                return TaskResult(
                    loss, float(loss), task_metrics(out.detach(), task.query_y, self.loss_fn)
                )
            s_out = self._forward(detached, phi, task.support_x, 0, training)
            g_s = flatten(
                autograd_grads(self.loss_fn(s_out, task.support_y), phi, create_graph=True), names
            )
            tensors = [phi[n] for n in names]

            def matvec(v: Tensor) -> Tensor:
                hv = torch.autograd.grad(
                    g_s, tensors, grad_outputs=v, retain_graph=True, allow_unused=True
                )
                hv_flat = torch.cat(
                    [
                        (h if h is not None else torch.zeros_like(t)).reshape(-1)
                        for h, t in zip(hv, tensors)
                    ]
                )
                return v + hv_flat / self.lam

            v = unflatten(conjugate_gradient(matvec, g_q, iters=self.cg_steps), phi, names)
        surrogate = sum((meta[n] * v[n].detach()).sum() for n in names)
        return TaskResult(
            surrogate,
            float(q_loss.detach()),
            task_metrics(out.detach(), task.query_y, self.loss_fn),
        )

    def batched_meta_loss(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Mean surrogate and query loss of tasks stacked on dim 0.

        The same implicit gradient with :func:`torch.func` transforms (Hessian-vector
        products by ``grad`` of ``grad``) and a fixed number of CG iterations, vectorised
        over tasks with :func:`torch.func.vmap`.
        """
        meta = named_params(self.model)
        detached = {k: v.detach() for k, v in meta.items()}
        names = self.adapt_names

        def one(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> tuple[Tensor, Tensor]:
            fast = self._fast_weights(detached, sx, sy, training=True, functional=True)
            phi = {n: fast[n] for n in names}

            def query_loss(p: TensorDict) -> Tensor:
                return self.loss_fn(self._forward(detached, p, qx, None, True), qy)

            def support_loss(p: TensorDict) -> Tensor:
                return self.loss_fn(self._forward(detached, p, sx, 0, True), sy)

            g_q, q_loss = torch.func.grad_and_value(query_loss)(phi)
            grad_s = torch.func.grad(support_loss)

            def matvec(v: Tensor) -> Tensor:
                hv = torch.func.grad(lambda p: flatten(grad_s(p), names).dot(v))(phi)
                return v + flatten(hv, names) / self.lam

            v = conjugate_gradient(matvec, flatten(g_q, names), iters=self.cg_steps, tol=None)
            return v, q_loss

        with torch.no_grad():
            v, q_losses = torch.func.vmap(one)(support_x, support_y, query_x, query_y)
        v = unflatten(v.mean(0), detached, names)
        surrogate = sum((meta[n] * v[n]).sum() for n in names)
        return surrogate, q_losses.mean()
