"""Classifier-only adaptation computes the embedding once per task, with identical results."""

from __future__ import annotations

import pytest
import torch

from landcover.meta.registry import build_learner
from landcover.models import build_model
from landcover.tasks.task import Task


def _task(seed: int = 0) -> Task:
    g = torch.Generator().manual_seed(seed)
    return Task(
        torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64),
        torch.randint(0, 3, (2, 32, 32), generator=g),
        torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64),
        torch.randint(0, 3, (2, 32, 32), generator=g),
    )


@pytest.mark.parametrize("stride", [1, 4])
@pytest.mark.parametrize("first_order", [True, False])
def test_embed_once_matches_the_full_forward(stride, first_order):
    losses, grads, preds = [], [], []
    for embed_once in (True, False):
        torch.manual_seed(0)
        model = build_model("small_unet", 3, 3, width=4, depth=2, norm="group", stride=stride)
        model = model.double()
        learner = build_learner(
            "mamlpp", model, torch.nn.CrossEntropyLoss(ignore_index=255), steps=2,
            inner_lr=0.3, adapt=["head.classifier"], first_order_epochs=1000 if first_order else 0,
        )  # fmt: skip
        assert learner.embed_once  # classifier-only adaptation of a body/decoder/classifier model
        learner.embed_once = embed_once
        task = _task()
        learner.zero_grad()
        result = learner.task_loss(task, training=True)
        result.loss.backward()
        losses.append(result.loss.detach())
        grads.append(
            {n: p.grad.clone() for n, p in learner.named_parameters() if p.grad is not None}
        )
        state = learner.adapt(task.support_x, task.support_y)
        preds.append(learner.predict(state, task.query_x).detach())
    assert torch.allclose(losses[0], losses[1], atol=1e-10)
    assert grads[0].keys() == grads[1].keys()
    assert any(n.startswith("model.head.decoder") for n in grads[0])  # the decoder is meta-learned
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-9), n
    assert torch.allclose(preds[0], preds[1], atol=1e-10)


def test_other_adapted_sets_do_not_embed_once():
    model = build_model("small_unet", 3, 3, width=4, depth=2, norm="group")
    learner = build_learner("mamlpp", model, torch.nn.CrossEntropyLoss(), steps=1, adapt=["head"])
    assert learner.body_once and not learner.embed_once
