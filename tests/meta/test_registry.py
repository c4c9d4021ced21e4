"""The learner registry: names, options, errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from landcover.meta.protocol import Learner
from landcover.meta.registry import LEARNER_NAMES, LEARNERS, build_learner, learner_class
from landcover.tasks.task import Task

CORE = [
    "maml",
    "fomaml",
    "reptile",
    "metasgd",
    "anil",
    "cavia",
    "imaml",
    "mamlpp",
    "pretrain",
    "scratch",
]


@pytest.mark.parametrize("name", CORE)
def test_every_core_learner_builds_trains_and_adapts(name):
    torch.manual_seed(0)
    d_in = 1 + (5 if name == "cavia" else 0)
    model = nn.Sequential(nn.Linear(d_in, 8), nn.ReLU(), nn.Linear(8, 1))
    learner = build_learner(name, model, nn.MSELoss(), steps=2)
    assert isinstance(learner, Learner) and learner.name == name
    json.dumps(learner.options)
    task = Task(torch.randn(5, 1), torch.randn(5, 1), torch.randn(7, 1), torch.randn(7, 1))
    before = [p.detach().clone() for p in learner.parameters()]
    opt = torch.optim.SGD(learner.parameters(), lr=0.1)
    stats = learner.meta_backward([task, task])
    opt.step()
    assert stats["query_loss"] >= 0
    moved = any(not torch.equal(a, b.detach()) for a, b in zip(before, learner.parameters()))
    assert moved == (name != "scratch")
    for steps in (0, 1, 4):  # another step count than trained
        out = learner.predict(
            learner.adapt(task.support_x, task.support_y, steps=steps), task.query_x
        )
        assert out.shape == (7, 1) and torch.isfinite(out).all()
    with torch.no_grad():  # serving: adapting works under no_grad too
        state = learner.adapt(task.support_x, task.support_y)
        assert learner.predict(state.detached(), task.query_x).shape == (7, 1)
    preds = learner.batched_predict(
        *(torch.stack([t] * 3) for t in (task.support_x, task.support_y, task.query_x))
    )
    assert preds.shape == (3, 7, 1)


def test_registry_errors_are_actionable():
    model = nn.Linear(1, 1)
    with pytest.raises(KeyError, match="choose one of"):
        build_learner("mamll", model, nn.MSELoss())
    with pytest.raises(ValueError, match="does not take"):
        build_learner("maml", model, nn.MSELoss(), inner_rate=0.1)
    with pytest.raises(ValueError, match="JSON"):
        build_learner("maml", model, nn.MSELoss(), adapt={"weight"})


def test_registration_is_one_line():
    LEARNERS["my_maml"] = "landcover.meta.maml:MAML"
    try:
        assert "my_maml" in LEARNER_NAMES
        assert learner_class("my_maml").__name__ == "MAML"
    finally:
        del LEARNERS["my_maml"]
