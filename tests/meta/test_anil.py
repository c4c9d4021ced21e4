"""ANIL / adapt-a-subset and body-once mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landcover.meta.registry import build_learner
from tests.meta.toy import ToySeg, seg_task

CE = nn.CrossEntropyLoss(ignore_index=255)


def test_anil_changes_only_the_named_subset():
    model = ToySeg().double()
    task = seg_task(dtype=torch.float64)
    learner = build_learner("anil", model, CE, inner_lr=0.5, steps=2, adapt=["head.classifier"])
    state = learner.adapt(task.support_x, task.support_y)
    assert set(state.params) == {"head.classifier.weight", "head.classifier.bias"}
    assert not torch.allclose(state.params["head.classifier.weight"], model.head.classifier.weight)
    learner.task_loss(task).loss.backward()
    assert model.body.conv.weight.grad is not None  # the body is meta-learned
    assert model.body.unused.weight.grad is None


def test_body_once_equals_full_forward_inner_loop():
    task = seg_task(dtype=torch.float64)
    grads = []
    for body_once in (True, False):
        torch.manual_seed(0)
        model = ToySeg().double()
        learner = build_learner("anil", model, CE, inner_lr=0.5, steps=3, body_once=body_once)
        assert learner.body_once is body_once
        result = learner.task_loss(task)
        result.loss.backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
        state = learner.adapt(task.support_x, task.support_y)
        out = learner.predict(state, task.query_x)
        assert out.shape == (3, 3, 6, 6)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_body_once_counts_body_calls():
    model = ToySeg()
    calls = []
    model.body.register_forward_hook(lambda *a: calls.append(1))
    learner = build_learner("anil", model, CE, inner_lr=0.5, steps=4)
    learner.task_loss(seg_task())
    assert len(calls) == 2  # support once + query once, not once per inner step
    calls.clear()
    full = build_learner("maml", model, CE, inner_lr=0.5, steps=4)
    full.task_loss(seg_task())
    assert len(calls) == 5


def test_body_once_refused_when_impossible():
    with pytest.raises(ValueError, match="impossible"):
        build_learner("maml", ToySeg(), CE, body_once=True)
    with pytest.raises(ValueError, match="matches no parameter"):
        build_learner("anil", ToySeg(), CE, adapt=["heda"])


def test_anil_default_subset_for_sequential_mlp():
    mlp = nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 1))
    learner = build_learner("anil", mlp, nn.MSELoss())
    assert learner.adapt_names == ["2.weight", "2.bias"]
