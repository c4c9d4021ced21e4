"""Every learner family honours ``task_loss(training=False)``: a detached evaluation loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landcover.meta.registry import build_learner
from landcover.models.conv4 import Conv4
from landcover.tasks.task import Task

FAMILIES = {
    "protonet": ({}, 0),
    "ridge": ({}, 0),
    "metaoptnet_svm": ({}, 0),
    "cnp": ({"max_way": 5}, 0),
    "mann": ({"max_way": 5}, 0),
    "snail": ({"max_way": 5}, 0),
    "metanet": ({"max_way": 5}, 0),
    "maml": ({}, 3),
}


def _episode(way: int = 3, shot: int = 2) -> Task:
    g = torch.Generator().manual_seed(0)
    sx = torch.randn(way * shot, 1, 28, 28, generator=g)
    qx = torch.randn(way * shot, 1, 28, 28, generator=g)
    y = torch.arange(way).repeat_interleave(shot)
    return Task(sx, y, qx, y.clone())


@pytest.mark.parametrize("name", list(FAMILIES))
def test_evaluation_loss_is_detached_and_training_loss_is_not(name):
    options, head = FAMILIES[name]
    torch.manual_seed(0)
    learner = build_learner(name, Conv4(1, head, hidden=8), nn.CrossEntropyLoss(), **options)
    task = _episode()
    evaluated = learner.task_loss(task, training=False)
    assert not evaluated.loss.requires_grad, name
    assert torch.isfinite(evaluated.loss) and evaluated.query_loss > 0
    assert learner.task_loss(task, training=True).loss.requires_grad, name
