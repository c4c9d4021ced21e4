"""Sinusoid task sampler: ranges, shapes, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from landcover.tasks.sinusoid import SinusoidSampler


def test_batch_shapes_ranges_and_targets():
    batch = SinusoidSampler(5, 100, seed=3).sample(400)
    assert batch.support_x.shape == (400, 5, 1) and batch.query_y.shape == (400, 100, 1)
    assert batch.amplitude.min() >= 0.1 and batch.amplitude.max() <= 5.0
    assert batch.phase.min() >= 0.0 and batch.phase.max() <= math.pi
    assert batch.query_x.min() >= -5.0 and batch.query_x.max() <= 5.0
    expected = batch.amplitude.view(-1, 1, 1) * torch.sin(
        batch.query_x - batch.phase.view(-1, 1, 1)
    )
    torch.testing.assert_close(batch.query_y, expected)
    assert batch.amplitude.std() > 1.0  # really spread over [0.1, 5]


def test_seeded_and_independent_of_global_rng():
    a = SinusoidSampler(10, seed=1).sample(3)
    torch.manual_seed(123)
    b = SinusoidSampler(10, seed=1).sample(3)
    torch.testing.assert_close(a.support_x, b.support_x)
    assert not torch.equal(a.support_x, SinusoidSampler(10, seed=2).sample(3).support_x)
    tasks = a.tasks()
    assert len(tasks) == 3 and tasks[0].meta["amplitude"] == pytest.approx(float(a.amplitude[0]))


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="k_support"):
        SinusoidSampler(0)
    with pytest.raises(ValueError, match="n_tasks"):
        SinusoidSampler(5).sample(0)
