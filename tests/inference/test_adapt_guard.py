"""The adaptation guard: adaptation never leaves the support worse than no adaptation, even
where plain extra steps diverge (huge inner rates, learned rates run past their trained
steps); and the support crop pool stays within its pixel budget."""

from __future__ import annotations

import pytest
import torch

from landcover.inference.adapt import adapt_bundle, crop_pool
from landcover.inference.adapt_guard import candidate_steps, split_support
from landcover.inference.bundle import ModelBundle
from landcover.inference.testing import brightest_band_tiles, fit_brightest_band, tiny_bundle

REPORT_KEYS = {"support_miou_before", "support_miou_after", "steps_kept", "steps_tried",
               "held_out_tiles"}  # fmt: skip


@pytest.fixture(scope="module")
def good_weights() -> dict[str, torch.Tensor]:
    """Weights of the tiny network that already segment :func:`brightest_band_tiles` well."""
    torch.manual_seed(0)
    model = fit_brightest_band(tiny_bundle(3, 3).build_learner().train().model)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _trained(learner: str, options: dict, weights: dict[str, torch.Tensor]) -> ModelBundle:
    """A tiny bundle of ``learner`` whose meta-weights are ``weights``."""
    bundle = tiny_bundle(3, 3, learner=learner, learner_options=options)
    lrn = bundle.build_learner()
    lrn.model.load_state_dict(weights)
    bundle.state = {k: v.detach().clone() for k, v in lrn.state_dict().items()}
    return bundle


@pytest.mark.parametrize(
    ("learner", "options", "steps"),
    [
        ("maml", {"steps": 2, "inner_lr": 40.0}, 5),  # plain steps blow up
        ("metasgd", {"steps": 2, "inner_lr": 40.0}, 8),  # learned rates past trained steps
    ],
)
def test_guard_keeps_the_map_when_plain_steps_diverge(
    learner: str, options: dict, steps: int, good_weights: dict[str, torch.Tensor]
) -> None:
    bundle = _trained(learner, options, good_weights)
    x, y = brightest_band_tiles(4, seed=2)
    plain = adapt_bundle(bundle, x, y, steps=steps, guard=False)
    assert plain.miou_before > 0.6  # the meta-weights are good ...
    assert not plain.miou_after > plain.miou_before - 0.2  # ... and plain steps wreck them
    guarded = adapt_bundle(bundle, x, y, steps=steps)
    report = guarded.report()
    assert set(report) == REPORT_KEYS
    assert report["support_miou_before"] == pytest.approx(plain.miou_before, abs=1e-6)
    assert report["support_miou_after"] >= report["support_miou_before"]
    assert report["steps_kept"] < steps and report["steps_tried"] == steps
    assert report["held_out_tiles"] == 1  # a quarter of 4 tiles
    curve = guarded.bundle.info["adaptation"]["held_out_curve"]
    assert [c["steps"] for c in curve] == candidate_steps(steps)
    # the kept state is the one the bundle predicts with
    assert guarded.bundle.adapted_state().step == report["steps_kept"]


def test_guard_adapts_when_steps_help_and_holds_out_pixels_of_one_tile() -> None:
    bundle = tiny_bundle(3, 3, learner_options={"steps": 5, "inner_lr": 0.5})
    x, y = brightest_band_tiles(1, seed=3)
    plain = adapt_bundle(bundle, x, y, steps=5, guard=False)
    assert plain.miou_after > plain.miou_before + 0.1  # adaptation helps on this task
    report = adapt_bundle(bundle, x, y, steps=5).report()
    assert report["held_out_tiles"] == 0  # one tile: pixel blocks held out instead
    assert report["steps_kept"] > 0
    assert report["support_miou_after"] > report["support_miou_before"] + 0.1


def test_split_support_blocks_and_tiles() -> None:
    y = torch.zeros(1, 32, 32, dtype=torch.long)
    fit, held, n = split_support(y, torch.zeros(1, dtype=torch.long), 255)
    assert n == 0 and ((fit == 255) ^ (held == 255)).all()  # a partition of the pixels
    share = float((held != 255).float().mean())
    assert 0.1 < share < 0.45
    fit, held, n = split_support(torch.zeros(8, 4, 4, dtype=torch.long), torch.arange(8), 255)
    assert n == 2 and int((held != 255).any(-1).any(-1).sum()) == 2


def test_crop_pool_respects_the_pixel_budget() -> None:
    images = [torch.rand(3, 200, 200), torch.rand(3, 100, 300)]
    masks = [torch.zeros(200, 200, dtype=torch.long), torch.ones(100, 300, dtype=torch.long)]
    x, y, tiles = crop_pool(images, masks, 32, 255, max_pixels=None)
    assert len(x) == 49 + 40
    x, y, tiles = crop_pool(images, masks, 32, 255, max_pixels=10 * 32 * 32)
    assert x.shape == (10, 3, 32, 32) and set(tiles.tolist()) == {0, 1}
    assert bool((y[tiles == 1] == 1).all())  # crops keep their own tile's mask
    again = crop_pool(images, masks, 32, 255, max_pixels=10 * 32 * 32)
    assert torch.equal(again[0], x)  # seeded


def test_candidate_steps() -> None:
    assert candidate_steps(0) == [0]
    assert candidate_steps(1) == [0, 1]
    assert candidate_steps(5) == [0, 1, 2, 5]
    assert candidate_steps(12) == [0, 1, 3, 6, 12]
