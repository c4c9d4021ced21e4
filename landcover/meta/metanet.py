"""Meta Networks: fast weights generated from loss gradients, with an external memory.

Munkhdalai & Yu, "Meta Networks", ICML 2017. Two learners, each with slow weights
(meta-learned across tasks) and fast weights (produced per task from loss gradients, the
"meta information"), combined by layer augmentation (the outputs of a layer with slow and
with fast weights are summed):

* the dynamic representation learner ``u`` (encoder features then a linear map ``Q``)
  gets a task-level fast weight ``Q*`` from the gradients of a representation loss on
  the support set, through the meta-learner ``d``;
* the base learner ``b`` (encoder features then a linear classifier ``W``) gets one fast weight
  ``W*_i`` per support example from the gradient of its own loss on that example,
  through the meta-learner ``m``. The ``W*_i`` are written to an external memory whose
  keys are the support representations ``r_i = u(Q, Q*, x_i)``;
* a query ``x`` reads the memory by soft attention on cosine similarity,
  ``W*(x) = sum_i softmax_i(tau cos(r_i, u(Q, Q*, x))) W*_i``, and is classified by
  ``W x_b + W*(x) x_b`` with ``x_b`` the base encoder's features.

Choices where the paper leaves room (stated here so the numbers can be read): ``u`` and
``b`` share one convolutional encoder (the paper uses two; sharing halves the CPU cost)
and fast weights live on their last linear layers ``Q`` and ``W``; ``d`` and ``m`` are
coordinate-wise maps of the gradient, ``-s g + MLP(preprocess(g))`` (preprocessing of
Andrychowicz et al. 2016; ``s`` starts at 1 and the MLP at 0, so the untrained learner
already takes one gradient step and trains quickly), ``W`` starts at zero, and
``Q*`` is the mean of ``d`` over the support examples (the paper runs an LSTM over them;
the mean keeps the learner invariant to the order of the support set); the representation
loss is a prototype cross-entropy on ``Q``'s outputs (the paper uses a contrastive or
cross-entropy loss); the attention has a learned temperature ``tau``; gradients are inputs
of ``d`` and ``m`` and are not differentiated through (first order, as in the paper).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from landcover.meta.class_labels import dense_class_count
from landcover.meta.meta_lstm import preprocess
from landcover.meta.protocol import AdaptedState, Learner, TaskResult
from landcover.tasks.task import Task


class FastWeightGenerator(nn.Module):
    """Coordinate-wise map of a gradient to a fast weight (``m`` or ``d``).

    ``g -> -scale * g + MLP(preprocess(g))``, the MLP shared by every coordinate.
    """

    def __init__(self, hidden: int = 20) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[2].weight)  # start as a plain gradient step, learn the rest
        nn.init.zeros_(self.net[2].bias)
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, grads: Tensor) -> Tensor:
        """Fast weights with the shape of ``grads``."""
        flat = preprocess(grads.reshape(-1)).to(grads.dtype)
        return -self.scale * grads + self.net(flat).reshape(grads.shape)


class MetaNetwork(Learner):
    """Meta Networks for N-way classification (Munkhdalai & Yu 2017).

    Args:
        model: Embedding network ``x -> (n, D)`` (flattened), shared by ``u`` and ``b``.
        loss_fn: Query loss on logits; cross-entropy by default.
        max_way: Largest number of classes of a task (rows of the slow classifier ``W``).
        key_dim: Size of the representations ``r`` (rows of ``Q``).
        hidden: Hidden units of the fast-weight generators ``m`` and ``d``.
        temperature: Initial attention temperature ``tau``.
        feature_dim: ``D``; read from ``model.feature_dim`` when omitted.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        max_way: int = 20,
        key_dim: int = 64,
        hidden: int = 20,
        temperature: float = 10.0,
        feature_dim: int | None = None,
    ) -> None:
        super().__init__(loss_fn if loss_fn is not None else nn.CrossEntropyLoss())
        dim = feature_dim if feature_dim is not None else getattr(model, "feature_dim", None)
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(
                "MetaNetwork needs the embedding size: pass feature_dim=D or a model with an "
                f"integer 'feature_dim' attribute; got {dim!r}"
            )
        if max_way < 2 or key_dim < 1 or hidden < 1:
            raise ValueError(
                f"need max_way >= 2, key_dim >= 1, hidden >= 1; got {max_way}, {key_dim}, {hidden}"
            )
        self.max_way, self.feature_dim = int(max_way), dim
        self.encoder = model
        self.w = nn.Parameter(torch.zeros(max_way, dim))
        self.q = nn.Parameter(torch.randn(key_dim, dim) / dim**0.5)
        self.m = FastWeightGenerator(hidden)
        self.d = FastWeightGenerator(hidden)
        self.log_tau = nn.Parameter(torch.tensor(float(temperature)).log())

    # ----------------------------------------------------------------- pieces
    def embed(self, x: Tensor) -> Tensor:
        """Flattened encoder features ``(n, D)``."""
        return self.encoder(x).flatten(1)

    def represent(self, feats_u: Tensor, q_fast: Tensor) -> Tensor:
        """``u(Q, Q*, x)``: layer augmentation of the slow and fast maps ``(n, key_dim)``."""
        return feats_u @ self.q.T + feats_u @ q_fast.T

    def representation_gradients(self, feats_u: Tensor, labels: Tensor, n_way: int) -> Tensor:
        """Per-example gradients ``(n, key_dim, D)`` of the prototype loss w.r.t. ``Q``."""
        feats = feats_u.detach()
        onehot = F.one_hot(labels, n_way).to(feats.dtype)

        def losses(q: Tensor) -> Tensor:
            r = feats @ q.T
            protos = onehot.T @ r / onehot.sum(0)[:, None]
            logits = -(r[:, None, :] - protos[None]).pow(2).sum(-1)
            return F.cross_entropy(logits, labels, reduction="none")

        return torch.func.jacrev(losses)(self.q.detach())

    def example_gradients(self, feats_b: Tensor, labels: Tensor, n_way: int) -> Tensor:
        """Per-example gradients ``(n, n_way, D)`` of the base loss w.r.t. ``W[:n_way]``."""

        def loss_i(w: Tensor, f: Tensor, y: Tensor) -> Tensor:
            return F.cross_entropy((f @ w.T)[None], y[None])

        w = self.w[:n_way].detach()
        return torch.func.vmap(torch.func.grad(loss_i), in_dims=(None, 0, 0))(
            w, feats_b.detach(), labels
        )

    # ----------------------------------------------------------------- protocol
    def adapt(
        self,
        support_x: Tensor,
        support_y: Tensor,
        *,
        steps: int | None = None,
        create_graph: bool = False,
    ) -> AdaptedState:
        """Fast weights and memory from the support set (``steps`` ignored: no inner loop)."""
        n_way = dense_class_count(support_y, "MetaNetwork", max_way=self.max_way)
        labels = support_y.long()
        with torch.set_grad_enabled(create_graph):
            feats = self.embed(support_x)
            q_fast = self.d(self.representation_gradients(feats, labels, n_way)).mean(0)
            keys = self.represent(feats, q_fast)
            values = self.m(self.example_gradients(feats, labels, n_way))  # (n, N, D)
        state = AdaptedState(
            extras={"q_fast": q_fast, "keys": keys, "values": values, "n_way": n_way}
        )
        return state if create_graph else state.detached()

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Logits ``(len(x), N)``: slow classifier plus the fast weights read from memory."""
        n_way = state.extras["n_way"]
        feats_b = self.embed(x)
        r = self.represent(feats_b, state.extras["q_fast"])
        cos = F.normalize(r, dim=1) @ F.normalize(state.extras["keys"], dim=1).T  # (q, n)
        attn = torch.softmax(self.log_tau.exp() * cos, dim=1)
        fast = torch.einsum("qn,nkd->qkd", attn, state.extras["values"])  # (q, N, D)
        slow = feats_b @ self.w[:n_way].T
        return slow + torch.einsum("qkd,qd->qk", fast, feats_b)

    def task_loss(self, task: Task, *, training: bool = True) -> TaskResult:
        """Query cross-entropy with the task's fast weights and memory."""
        state = self.adapt(task.support_x, task.support_y, create_graph=training)
        with torch.set_grad_enabled(training):
            logits = self.predict(state, task.query_x)
            loss = self.loss_fn(logits, task.query_y)
        acc = float((logits.argmax(1) == task.query_y).float().mean())
        return TaskResult(
            loss if training else loss.detach(), float(loss.detach()), {"accuracy": acc}
        )
