"""The analyst's random forest on a multi-scale filter bank, as a learner."""

from __future__ import annotations

import pytest
import torch

from landcover.meta.random_forest import LOG_FLOOR, RandomForestLearner, filter_bank
from landcover.tasks.task import Task


def _scene(seed: int, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Left half class 0 (dark, smooth), right half class 2 (bright, textured)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.zeros(size, size, dtype=torch.long)
    y[:, size // 2 :] = 2
    x = torch.randn(3, size, size, generator=g) * 0.05
    x[:, :, size // 2 :] += 1.0 + 0.5 * torch.randn(3, size, size - size // 2, generator=g)
    return x, y


def test_filter_bank_has_intensity_edges_and_texture_at_five_scales_per_band():
    feats = filter_bank(torch.randn(2, 20, 24))
    # 5 scales (1, 2, 4, 8, 16) x (intensity + edges + 2 texture) x 2 bands
    assert feats.shape == (20, 24, 40)


def test_forest_learns_the_support_and_maps_new_tiles():
    (xs, ys), (xq, yq) = _scene(0), _scene(1)
    ys[0, 0] = 255  # unlabeled pixels are left out
    learner = RandomForestLearner(4, trees=20, jobs=1)
    task = Task(xs[None], ys[None], xq[None], yq[None])
    state = learner.adapt(task.support_x, task.support_y)
    logits = learner.predict(state, task.query_x)
    assert logits.shape == (1, 4, 48, 48)
    accuracy = float((logits.argmax(1) == yq[None]).float().mean())
    assert accuracy > 0.95
    # classes the support lacks can never win
    assert torch.all(logits[:, 1] == LOG_FLOOR) and torch.all(logits[:, 3] == LOG_FLOOR)
    result = learner.task_loss(task, training=True)
    assert not result.loss.requires_grad and result.query_loss < 0.3


def test_forest_is_deterministic_in_its_seed():
    (xs, ys), (xq, _) = _scene(0), _scene(1)
    a = RandomForestLearner(3, trees=5, jobs=1, seed=3)
    b = RandomForestLearner(3, trees=5, jobs=1, seed=3)
    pa = a.predict(a.adapt(xs[None], ys[None]), xq[None])
    pb = b.predict(b.adapt(xs[None], ys[None]), xq[None])
    assert torch.equal(pa, pb)


def test_forest_refuses_a_support_without_labels():
    x, y = _scene(0)
    with pytest.raises(ValueError, match="no labelled pixel"):
        RandomForestLearner(3).adapt(x[None], torch.full_like(y, 255)[None])
