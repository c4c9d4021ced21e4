"""The meta-learner LSTM: a learned update rule (Ravi & Larochelle 2017).

Ravi & Larochelle, "Optimization as a Model for Few-Shot Learning", ICLR 2017. The
learner's parameters are the cell state of an LSTM that runs over the inner steps,
coordinate-wise, with weights shared by every coordinate::

    c_t = f_t * c_{t-1} + i_t * (-grad_t)          (phi = theta - alpha * f(theta, D, grad))
    i_t = sigmoid(W_I [h_t, c_{t-1}, i_{t-1}] + b_I)    (a learned, per-coordinate rate)
    f_t = sigmoid(W_F [h_t, c_{t-1}, f_{t-1}] + b_F)    (a learned shrinkage / forgetting)

with ``c_0`` the meta-learned initial parameters and ``h_t`` the hidden state of a first,
ordinary LSTM that reads the preprocessed gradient and loss of each coordinate
(Andrychowicz et al. 2016, appendix A: ``(log|x| / p, sign x)`` or ``(-1, e^p x)``).
With ``W_I = W_F = 0``, ``sigmoid(b_F) = 1`` and ``sigmoid(b_I) = alpha`` the update is
plain gradient descent with rate ``alpha``; the paper initialises close to that (``b_F``
large, ``b_I`` small) and we initialise ``b_I = logit(inner_lr)``.

As in the paper (section 3.2), the meta-gradient ignores the dependence of the gradient
and loss inputs on the parameters (they are detached), unless ``second_order=True``.
BatchNorm, if the model has it, normalises with the batch statistics of each call
(transductive, as in the paper's code); the model's running buffers are never touched.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from landcover.meta.batchnorm import BatchNormState, bn_mode, resolve_policy
from landcover.meta.functional import TensorDict, call, flatten, named_params, unflatten
from landcover.meta.protocol import AdaptedState, Learner, TaskResult
from landcover.meta.stacking import task_metrics
from landcover.tasks.task import Task


def preprocess(x: Tensor, p: float = 10.0) -> Tensor:
    """Andrychowicz et al. (2016) gradient preprocessing: ``(n,) -> (n, 2)``."""
    big = x.abs() >= math.exp(-p)
    first = torch.where(big, torch.log(x.abs().clamp_min(1e-38)) / p, torch.full_like(x, -1.0))
    second = torch.where(big, torch.sign(x), math.exp(p) * x)
    return torch.stack([first, second], dim=1)


def lstm_step(cell: nn.LSTMCell, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """``nn.LSTMCell``'s update written out (it has no vmap batching rule)."""
    h, c = state
    gates = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class MetaLSTM(Learner):
    """Learned coordinate-wise update rule (Ravi & Larochelle 2017).

    Args:
        model: The learner network; its initial weights are meta-learned (``c_0``).
        loss_fn: ``(prediction, target) -> scalar``.
        steps: Inner steps in training and by default in :meth:`adapt`.
        hidden: Hidden size of the first (gradient-reading) LSTM.
        inner_lr: Initial input-gate value ``sigmoid(b_I)`` (the initial step size).
        forget_bias: Initial ``b_F`` (5 gives ``f ~ 0.993``, the paper uses 4 to 6).
        second_order: Differentiate through the gradient inputs (the paper does not).
        bn: BatchNorm policy for the model: ``"auto"``, ``"none"`` or ``"transductive"``.
        vmap: Offer :meth:`batched_meta_loss` / :meth:`batched_predict`, which batch the
            tasks of a meta-batch with :func:`torch.func.vmap` (BatchNorm-free models,
            first order only).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        steps: int = 5,
        hidden: int = 20,
        inner_lr: float = 0.01,
        forget_bias: float = 5.0,
        second_order: bool = False,
        bn: str = "auto",
        vmap: bool = False,
    ) -> None:
        super().__init__(loss_fn)
        if int(steps) < 0 or int(hidden) < 1 or not 0.0 < float(inner_lr) < 1.0:
            raise ValueError(
                "MetaLSTM needs steps >= 0, hidden >= 1 and 0 < inner_lr < 1 (it is a sigmoid "
                f"gate); got steps={steps}, hidden={hidden}, inner_lr={inner_lr}"
            )
        if bn not in ("auto", "none", "transductive"):
            raise ValueError(f"MetaLSTM supports bn='auto', 'none' or 'transductive'; got {bn!r}")
        self.model = model
        self.default_steps = int(steps)
        self.second_order = bool(second_order)
        self.bn = BatchNormState(model, resolve_policy(model, bn, "transductive"), 0)
        self.vmap = bool(vmap)
        if self.vmap and (self.bn.policy != "none" or self.second_order):
            raise ValueError(
                "MetaLSTM(vmap=True) needs a BatchNorm-free model and second_order=False"
            )
        self.names = [n for n, _ in model.named_parameters()]
        self.reader = nn.LSTMCell(4, hidden)
        # Gate weights act on [h_t, c_{t-1}, gate_{t-1}]; small init as in the paper's code.
        self.w_input = nn.Parameter(torch.empty(hidden + 2).uniform_(-0.01, 0.01))
        self.w_forget = nn.Parameter(torch.empty(hidden + 2).uniform_(-0.01, 0.01))
        self.b_input = nn.Parameter(torch.tensor(math.log(inner_lr / (1.0 - inner_lr))))
        self.b_forget = nn.Parameter(torch.tensor(float(forget_bias)))

    # ----------------------------------------------------------------- functional core
    def _forward(self, params: TensorDict, x: Tensor) -> Tensor:
        over, buffers = self.bn.tensors(None)
        if self.bn.policy == "none":
            return call(self.model, params, buffers, x)
        with bn_mode(self.model, True):
            return call(self.model, {**params, **over}, buffers, x)

    def _loss_and_grad(
        self, theta: Tensor, x: Tensor, y: Tensor, graph: bool
    ) -> tuple[Tensor, Tensor]:
        """Support loss at the flat parameters ``theta`` and its (maybe detached) gradient."""
        like = named_params(self.model)
        point = theta if (graph and self.second_order) else theta.detach().requires_grad_()
        loss = self.loss_fn(self._forward(unflatten(point, like, self.names), x), y)
        (grad,) = torch.autograd.grad(loss, point, create_graph=graph and self.second_order)
        return loss, grad

    def gates(
        self, h: Tensor, c_prev: Tensor, i_prev: Tensor, f_prev: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Input and forget gates ``(P,)`` of every coordinate."""
        i = torch.sigmoid(
            torch.cat([h, c_prev[:, None], i_prev[:, None]], 1) @ self.w_input + self.b_input
        )
        f = torch.sigmoid(
            torch.cat([h, c_prev[:, None], f_prev[:, None]], 1) @ self.w_forget + self.b_forget
        )
        return i, f

    def _unroll(
        self, x: Tensor, y: Tensor, steps: int, graph: bool
    ) -> tuple[Tensor, dict[str, Any]]:
        """Run ``steps`` learned updates from ``c_0``; return the flat parameters and a trace."""
        c = flatten(named_params(self.model), self.names)
        n = c.numel()
        h = torch.zeros(n, self.reader.hidden_size, dtype=c.dtype, device=c.device)
        cell = torch.zeros_like(h)
        i_prev = torch.zeros_like(c)
        f_prev = torch.zeros_like(c)
        trace: dict[str, Any] = {"support_loss": [], "input_gate": [], "forget_gate": []}
        for _ in range(steps):
            loss, grad = self._loss_and_grad(c, x, y, graph)
            g_in = grad if self.second_order and graph else grad.detach()
            l_in = (loss if self.second_order and graph else loss.detach()).expand(n)
            features = torch.cat([preprocess(g_in), preprocess(l_in)], dim=1).to(c.dtype)
            h, cell = lstm_step(self.reader, features, (h, cell))
            i_prev, f_prev = self.gates(h, c, i_prev, f_prev)
            c = f_prev * c - i_prev * g_in
            if not graph:
                c, h, cell = c.detach(), h.detach(), cell.detach()
                i_prev, f_prev = i_prev.detach(), f_prev.detach()
            trace["support_loss"].append(float(loss.detach()))
            trace["input_gate"].append(float(i_prev.detach().mean()))
            trace["forget_gate"].append(float(f_prev.detach().mean()))
        return c, trace

    def _pure_unroll(self, c: Tensor, x: Tensor, y: Tensor, steps: int) -> Tensor:
        """First-order unroll for one task written with :func:`torch.func.grad` (vmap-able)."""
        like = named_params(self.model)

        def support_loss(theta: Tensor) -> Tensor:
            return self.loss_fn(self._forward(unflatten(theta, like, self.names), x), y)

        n = c.shape[0]
        h = c.new_zeros(n, self.reader.hidden_size)
        cell, i_prev, f_prev = torch.zeros_like(h), torch.zeros_like(c), torch.zeros_like(c)
        for _ in range(steps):
            grad, loss = torch.func.grad_and_value(support_loss)(c.detach())
            grad, loss = grad.detach(), loss.detach()
            features = torch.cat([preprocess(grad), preprocess(loss.expand(n))], dim=1)
            h, cell = lstm_step(self.reader, features, (h, cell))
            i_prev, f_prev = self.gates(h, c, i_prev, f_prev)
            c = f_prev * c - i_prev * grad
        return c

    def batched_meta_loss(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Mean query loss of tasks stacked on dim 0, batched by vmap (first order)."""
        like = named_params(self.model)
        c0 = flatten(like, self.names)

        def one(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> Tensor:
            c = self._pure_unroll(c0, sx, sy, self.default_steps)
            return self.loss_fn(self._forward(unflatten(c, like, self.names), qx), qy)

        losses = torch.func.vmap(one)(support_x, support_y, query_x, query_y)
        return losses.mean(), losses.mean().detach()

    def batched_predict(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, *, steps: int | None = None
    ) -> Tensor:
        """Adapt to each of a stack of tasks and predict its ``query_x`` (no meta-graph)."""
        steps = self.default_steps if steps is None else int(steps)
        like = {k: v.detach() for k, v in named_params(self.model).items()}
        c0 = flatten(like, self.names)

        def one(sx: Tensor, sy: Tensor, qx: Tensor) -> Tensor:
            c = self._pure_unroll(c0, sx, sy, steps)
            return self._forward(unflatten(c, like, self.names), qx)

        with torch.no_grad():
            return torch.func.vmap(one)(support_x, support_y, query_x).detach()

    # ----------------------------------------------------------------- protocol
    def adapt(
        self,
        support_x: Tensor,
        support_y: Tensor,
        *,
        steps: int | None = None,
        create_graph: bool = False,
    ) -> AdaptedState:
        """Apply the learned update rule ``steps`` times (default: the trained number)."""
        steps = self.default_steps if steps is None else int(steps)
        if steps < 0:
            raise ValueError(f"steps must be >= 0; got {steps}")
        with torch.enable_grad():
            flat, trace = self._unroll(support_x, support_y, steps, create_graph)
        params = unflatten(flat, named_params(self.model), self.names)
        if not create_graph:
            params = {k: v.detach() for k, v in params.items()}
        return AdaptedState(params=params, extras={"trace": trace}, step=steps)

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Outputs of the network with the adapted parameters."""
        return self._forward({**named_params(self.model), **state.params}, x)

    def task_loss(self, task: Task, *, training: bool = True) -> TaskResult:
        """Query loss after the learned updates; differentiable through the gates and ``c_0``."""
        state = self.adapt(task.support_x, task.support_y, create_graph=training)
        with torch.set_grad_enabled(training):
            out = self.predict(state, task.query_x)
            loss = self.loss_fn(out, task.query_y)
        metrics = task_metrics(out.detach(), task.query_y, self.loss_fn)
        trace = state.extras["trace"]
        if trace["input_gate"]:
            metrics |= {
                "input_gate": trace["input_gate"][-1],
                "forget_gate": trace["forget_gate"][-1],
            }
        return TaskResult(loss if training else loss.detach(), float(loss.detach()), metrics)
