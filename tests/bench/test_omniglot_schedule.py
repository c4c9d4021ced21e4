"""The Omniglot bench's outer-rate schedule anneals over the budget actually used."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from landcover.bench.omniglot.core import Budget, cosine_rate, meta_train
from landcover.tasks.task import Task


def test_cosine_rate_endpoints_midpoint_and_clamping():
    assert cosine_rate(1e-3, 0.0) == pytest.approx(1e-3)
    assert cosine_rate(1e-3, 1.0) == pytest.approx(1e-5)
    assert cosine_rate(1e-3, 0.5) == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))
    assert cosine_rate(1e-3, 2.0) == cosine_rate(1e-3, 1.0)
    rates = [cosine_rate(1.0, p / 10) for p in range(11)]
    assert all(b < a for a, b in itertools.pairwise(rates))


class _Recorder(nn.Module):
    """A learner stand-in whose ``meta_backward`` records the optimiser's rate."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.rates: list[float] = []
        self.opt: torch.optim.Optimizer | None = None

    def on_epoch_start(self, epoch: int) -> None:
        del epoch

    def meta_backward(self, tasks: list[Task]) -> dict[str, float]:
        (self.w**2).sum().backward()
        return {"query_loss": 0.0, "accuracy": 1.0}


class _Data:
    def __init__(self) -> None:
        self.labels = torch.arange(10).repeat_interleave(3)
        self.images = torch.zeros(30, 1, 2, 2)


def test_meta_train_ends_near_the_floor_when_iterations_cap_first(monkeypatch):
    recorder = _Recorder()
    seen: list[float] = []
    real_adam = torch.optim.Adam

    class SpyAdam(real_adam):  # type: ignore[misc, valid-type]
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "Adam", SpyAdam)
    budget = Budget(
        train_seconds=1e6,
        train_wall_seconds=1e6,
        max_iters=20,
        meta_batch=1,
        train_query=1,
        eval_episodes=1,
        eval_query=1,
    )
    info = meta_train(recorder, nn.Identity(), _Data(), budget, lr=1e-2, settings=[(5, 1)])
    assert info["iterations"] == 20 and len(seen) == 20
    assert seen[0] == pytest.approx(1e-2)
    assert seen[-1] == pytest.approx(cosine_rate(1e-2, 19 / 20))
    assert seen[-1] < 0.05 * seen[0]
    assert all(b <= a for a, b in itertools.pairwise(seen))
    assert not math.isnan(info["final_loss"])


def test_meta_train_augments_support_and_query_of_every_training_episode():
    seen: list[Task] = []

    class Keeper(_Recorder):
        def meta_backward(self, tasks: list[Task]) -> dict[str, float]:
            seen.extend(tasks)
            return super().meta_backward(tasks)

    calls: list[int] = []

    def shift(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        assert isinstance(generator, torch.Generator)
        calls.append(len(images))
        return images + 1.0

    budget = Budget(
        train_seconds=1e6,
        train_wall_seconds=1e6,
        max_iters=3,
        meta_batch=2,
        train_query=1,
        eval_episodes=1,
        eval_query=1,
    )
    meta_train(Keeper(), nn.Identity(), _Data(), budget, settings=[(5, 1)], augment=shift)
    assert len(seen) == 6 and calls == [5, 5] * 6
    assert all(float(t.support_x.min()) == 1.0 and float(t.query_x.min()) == 1.0 for t in seen)
