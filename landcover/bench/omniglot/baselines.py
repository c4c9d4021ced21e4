"""The two non-meta-learned baselines of ``landcover bench omniglot`` (Chen et al. 2019).

A Conv-4 is pretrained as a plain classifier over all pooled training classes
(:func:`pretrain`); at test time either a new linear head is fitted on the support
embeddings (:class:`PretrainedHead`) or the queries are labelled by their nearest support
embedding (:class:`NearestNeighbour`).
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from landcover.bench.omniglot.core import Budget, cosine_rate, progress_of
from landcover.meta.embedding import flat_embedding
from landcover.meta.protocol import AdaptedState, Learner, TaskResult
from landcover.tasks.omniglot import OmniglotSet
from landcover.tasks.task import Task


def pretrain(
    encoder: nn.Module, feature_dim: int, data: OmniglotSet, budget: Budget, *, seed: int = 0
) -> dict[str, Any]:
    """Train ``encoder`` + a temporary linear classifier on all pooled classes (baseline)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    device = next(encoder.parameters()).device
    head = nn.Linear(feature_dim, data.num_classes).to(device)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    encoder.train()
    start, cpu, it, losses = time.monotonic(), time.process_time(), 0, []
    order = torch.randperm(len(data.labels), generator=g)
    pos = 0
    bar = tqdm(total=budget.max_iters, desc="pretrain", mininterval=2.0, leave=False)
    while (progress := progress_of(budget, it, start, cpu)) < 1.0:
        for group in opt.param_groups:
            group["lr"] = cosine_rate(1e-3, progress)
        if pos + budget.pretrain_batch > len(order):
            order, pos = torch.randperm(len(data.labels), generator=g), 0
        idx = order[pos : pos + budget.pretrain_batch]
        pos += budget.pretrain_batch
        images = data.images[idx.to(data.images.device)]
        loss = F.cross_entropy(head(encoder.embed(images)), data.labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses = [*losses[-49:], loss.item()]
        it += 1
        bar.update(1)
    bar.close()
    return {
        "iterations": it,
        "seconds": round(time.monotonic() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
        "final_loss": sum(losses) / max(len(losses), 1),
        "epochs": round(it * budget.pretrain_batch / len(data.labels), 2),
    }


class _EmbeddingBaseline(Learner):
    """Shared parts of the two baselines: an encoder, no meta-objective."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__(nn.CrossEntropyLoss())
        self.encoder = encoder

    def embed(self, x: Tensor) -> Tensor:
        return flat_embedding(self.encoder, x)

    def task_loss(self, task: Task, *, training: bool = True) -> TaskResult:
        """Query loss after adaptation (the baselines are not meta-trained)."""
        logits = self.predict(self.adapt(task.support_x, task.support_y), task.query_x)
        loss = self.loss_fn(logits, task.query_y)
        acc = float((logits.argmax(1) == task.query_y).float().mean())
        return TaskResult(loss, float(loss.detach()), {"accuracy": acc})


class PretrainedHead(_EmbeddingBaseline):
    """Fine-tune a new linear head on frozen pretrained embeddings (Chen et al. 2019).

    The head is fitted by ``steps`` full-batch Adam steps (lr 0.01, weight decay 1e-3) on
    L2-normalised embeddings, started from zero.
    """

    def __init__(self, encoder: nn.Module, *, steps: int = 100) -> None:
        super().__init__(encoder)
        self.steps = steps

    def adapt(
        self,
        support_x: Tensor,
        support_y: Tensor,
        *,
        steps: int | None = None,
        create_graph: bool = False,
    ) -> AdaptedState:
        """Fit the head."""
        with torch.no_grad():
            e = F.normalize(self.embed(support_x), dim=1)
        n_way = int(support_y.max()) + 1
        w = torch.zeros(n_way, e.shape[1], device=e.device, dtype=e.dtype, requires_grad=True)
        b = torch.zeros(n_way, device=e.device, dtype=e.dtype, requires_grad=True)
        opt = torch.optim.Adam([w, b], lr=0.01, weight_decay=1e-3)
        with torch.enable_grad():
            for _ in range(steps if steps is not None else self.steps):
                opt.zero_grad()
                F.cross_entropy(10.0 * e @ w.T + b, support_y).backward()
                opt.step()
        return AdaptedState(extras={"weights": w.detach(), "bias": b.detach()})

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Logits of the fitted head."""
        e = F.normalize(self.embed(x), dim=1)
        return 10.0 * e @ state.extras["weights"].T + state.extras["bias"]


class NearestNeighbour(_EmbeddingBaseline):
    """1-nearest-neighbour on pretrained embeddings (cosine similarity)."""

    def adapt(
        self,
        support_x: Tensor,
        support_y: Tensor,
        *,
        steps: int | None = None,
        create_graph: bool = False,
    ) -> AdaptedState:
        """Store the normalised support embeddings."""
        with torch.no_grad():
            e = F.normalize(self.embed(support_x), dim=1)
        return AdaptedState(extras={"support": e, "labels": support_y})

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Per class, the best cosine similarity of a support item (argmax = 1-NN)."""
        sim = F.normalize(self.embed(x), dim=1) @ state.extras["support"].T
        labels = state.extras["labels"]
        n_way = int(labels.max()) + 1
        out = sim.new_full((len(x), n_way), -2.0)
        return out.scatter_reduce(1, labels.expand(len(x), -1), sim, reduce="amax")
