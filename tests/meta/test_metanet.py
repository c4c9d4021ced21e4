from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landcover.meta.metanet import MetaNetwork
from landcover.tasks.task import Task


def _learner() -> MetaNetwork:
    enc = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 8))
    return MetaNetwork(enc, max_way=5, key_dim=4, hidden=6, feature_dim=8).double()


def _support(n_way: int = 3, shots: int = 2):
    x = torch.randn(n_way * shots, 6, dtype=torch.float64)
    return x, torch.arange(n_way).repeat(shots)


def test_example_gradients_equal_the_softmax_closed_form() -> None:
    learner = _learner()
    x, y = _support()
    feats = learner.embed(x)
    grads = learner.example_gradients(feats, y, 3)
    p = torch.softmax(feats @ learner.w[:3].T, 1)
    expected = (p - F.one_hot(y, 3).double())[:, :, None] * feats[:, None, :]
    assert torch.allclose(grads, expected.detach(), atol=1e-12)


def test_representation_gradients_are_per_example() -> None:
    learner = _learner()
    x, y = _support()
    feats = learner.embed(x).detach()
    grads = learner.representation_gradients(feats, y, 3)
    q = learner.q.detach().clone().requires_grad_()
    r = feats @ q.T
    protos = torch.stack([r[y == k].mean(0) for k in range(3)])
    logits = -((r[:, None] - protos[None]) ** 2).sum(-1)
    (g2,) = torch.autograd.grad(F.cross_entropy(logits[2:3], y[2:3]), q)
    assert grads.shape == (6, 4, 8)
    assert torch.allclose(grads[2], g2, atol=1e-12)


def test_memory_is_keyed_by_support_representations() -> None:
    learner = _learner()
    x, y = _support()
    state = learner.adapt(x, y)
    keys = learner.represent(learner.embed(x), state.extras["q_fast"])
    assert torch.allclose(state.extras["keys"], keys, atol=1e-12)
    assert state.extras["values"].shape == (6, 3, 8)  # one fast weight per support example
    assert state.extras["q_fast"].shape == learner.q.shape


def test_fast_weights_depend_on_the_support_only() -> None:
    learner = _learner()
    x, y = _support()
    q = torch.randn(7, 6, dtype=torch.float64)
    a, b = learner.adapt(x, y), learner.adapt(x, y)
    assert torch.equal(a.extras["values"], b.extras["values"])
    # A query's logits do not depend on the other queries.
    full = learner.predict(a, q)
    assert torch.allclose(learner.predict(a, q[2:4]), full[2:4], atol=1e-12)
    # ... and the support's labels do matter (the check is not vacuous).
    c = learner.adapt(x, y.roll(1))
    assert not torch.allclose(c.extras["values"], a.extras["values"])
    assert not torch.allclose(learner.predict(c, q), full)


def test_support_order_does_not_matter() -> None:
    learner = _learner()
    x, y = _support(shots=3)
    perm = torch.randperm(len(y))
    a, b = learner.adapt(x, y), learner.adapt(x[perm], y[perm])
    assert torch.allclose(b.extras["keys"], a.extras["keys"][perm], atol=1e-12)
    assert torch.allclose(b.extras["values"], a.extras["values"][perm], atol=1e-12)
    q = torch.randn(5, 6, dtype=torch.float64)
    assert torch.allclose(learner.predict(a, q), learner.predict(b, q), atol=1e-10)


def test_meta_gradient_reaches_every_part() -> None:
    learner = _learner()
    with torch.no_grad():  # the generators' MLPs start at zero (a plain gradient step)
        for gen in (learner.m, learner.d):
            assert torch.equal(
                gen(torch.ones(3, dtype=torch.float64)), -torch.ones(3, dtype=torch.float64)
            )
            gen.net[2].weight.normal_(0, 0.1)
    x, y = _support()
    task = Task(x, y, torch.randn(6, 6, dtype=torch.float64), torch.arange(3).repeat(2))
    result = learner.task_loss(task)
    result.loss.backward()
    for name, p in learner.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert 0.0 <= result.metrics["accuracy"] <= 1.0


def test_rejects_bad_input() -> None:
    learner = _learner()
    with pytest.raises(ValueError, match="every class"):
        learner.adapt(torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 2, 0, 2]))
    with pytest.raises(ValueError, match="max_way"):
        learner.adapt(torch.randn(6, 6, dtype=torch.float64), torch.arange(6))
    with pytest.raises(ValueError, match="feature_dim"):
        MetaNetwork(nn.Linear(3, 4))


def test_registered_under_its_name() -> None:
    from landcover.meta.registry import build_learner

    learner = build_learner(
        "metanet", nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 8)), None, feature_dim=8
    )
    assert type(learner) is MetaNetwork and learner.name == "metanet"
