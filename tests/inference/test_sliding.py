from __future__ import annotations

import itertools

import pytest
import torch

from landcover.inference.bundle import find_model
from landcover.inference.predict import Predictor, predict_array
from landcover.inference.sliding import StripBlender, WindowPlan, ramp, window_starts
from landcover.inference.testing import tiny_bundle


@pytest.mark.parametrize(
    ("total", "window", "overlap"),
    [(100, 32, 8), (32, 32, 8), (20, 32, 4), (33, 32, 0), (1000, 256, 64)],
)
def test_window_starts_cover_everything(total: int, window: int, overlap: int) -> None:
    starts = window_starts(total, window, overlap)
    w = min(window, total)
    covered = torch.zeros(total, dtype=torch.int64)
    for s in starts:
        assert s >= 0 and s + w <= total
        covered[s : s + w] += 1
    assert bool((covered > 0).all())
    assert starts == sorted(set(starts))
    for a, b in itertools.pairwise(starts):
        assert a + w - b >= overlap  # neighbours overlap at least as asked


def test_window_starts_rejects_bad_overlap() -> None:
    with pytest.raises(ValueError, match="overlap < window"):
        window_starts(100, 32, 32)


def test_ramp_shape() -> None:
    w = ramp(32, 16, 0)  # 3/8 of the overlap at 0, a rise over its middle quarter, then 1
    assert torch.all(w[:6] == 0) and torch.all(w[6:10] > 0) and torch.all(w[10:] == 1)
    assert torch.all(w[6:10].diff() > 0)  # rises monotonically
    assert torch.equal(ramp(32, 0, 16), ramp(32, 16, 0).flip(0))
    assert torch.equal(ramp(10, 0, 0), torch.ones(10))


@pytest.mark.parametrize(
    ("h", "w", "window", "overlap"),
    [(70, 53, 32, 8), (64, 64, 32, 16), (40, 100, 24, 12), (17, 9, 32, 8)],
)
def test_blend_weights_leave_no_pixel_uncovered(h: int, w: int, window: int, overlap: int) -> None:
    plan = WindowPlan.make(h, w, window, overlap)
    total = torch.zeros(h, w)
    for r, y in enumerate(plan.row_starts):
        for c, x in enumerate(plan.col_starts):
            total[y : y + plan.win_h, x : x + plan.win_w] += plan.weight(r, c)
    assert float(total.min()) > 0.05


def _predictor(kind: str) -> Predictor:
    bundle = tiny_bundle(3, 3, model_options={"width": 4, "depth": 0, "norm": "none"},
                         mean=10.0, std=5.0)  # fmt: skip
    pred = Predictor.from_bundle(bundle)
    model = find_model(pred.learner)
    with torch.no_grad():
        if kind == "constant":
            for p in model.parameters():
                p.zero_()
            model.head.classifier.bias.copy_(torch.tensor([0.3, 1.2, -0.5]))
        else:  # a translation-equivariant conv net with large weights (sharp differences)
            for p in model.parameters():
                p.mul_(3.0)
    return pred


def test_constant_model_blends_to_an_exactly_constant_map() -> None:
    pred = _predictor("constant")
    image = torch.rand(3, 75, 61) * 40
    out = predict_array(pred, image, window=32, overlap=12)
    expected = torch.softmax(torch.tensor([0.3, 1.2, -0.5]), 0)
    torch.testing.assert_close(out.probabilities, expected.view(3, 1, 1).expand(3, 75, 61),
                               rtol=0, atol=1e-6)  # fmt: skip
    assert bool((out.classes == 1).all())


def test_translation_equivariant_model_has_no_seams() -> None:
    pred = _predictor("conv")
    torch.manual_seed(3)
    image = torch.rand(3, 90, 77) * 40
    full = pred.probabilities(image[None])[0]  # one forward over the whole image
    blended = predict_array(pred, image, window=32, overlap=12).probabilities
    torch.testing.assert_close(blended, full, rtol=0, atol=1e-5)
    # naive stitching (no overlap) is visibly wrong at window borders: the test can fail
    naive = predict_array(pred, image, window=32, overlap=0).probabilities
    assert float((naive - full).abs().max()) > 1e-3


def test_nodata_pixels_get_the_nodata_class() -> None:
    pred = _predictor("conv")
    image = torch.rand(3, 40, 40)
    valid = torch.ones(40, 40, dtype=torch.bool)
    valid[:5] = False
    out = predict_array(pred, image, valid=valid, window=32, overlap=8)
    assert bool((out.classes[:5] == 255).all()) and bool((out.classes[5:] < 3).all())


def test_strip_blender_enforces_order() -> None:
    plan = WindowPlan.make(64, 64, 32, 8)
    blender = StripBlender(plan, 2)
    with pytest.raises(ValueError, match="row by row"):
        blender.add(1, 0, torch.zeros(2, 32, 32))
    with pytest.raises(ValueError, match=r"window probabilities \(2, 16, 32\)"):
        blender.add(0, 0, torch.zeros(2, 16, 32))


def test_all_nodata_windows_are_skipped() -> None:
    pred = _predictor("conv")
    calls: list[int] = []
    forward = pred.probabilities
    pred.probabilities = lambda x: calls.append(x.shape[0]) or forward(x)  # type: ignore[method-assign]
    image = torch.rand(3, 64, 96)
    valid = torch.zeros(64, 96, dtype=torch.bool)
    valid[:, :20] = True  # only the first column of windows sees data
    out = predict_array(pred, image, valid=valid, window=32, overlap=8)
    assert sum(calls) == 3  # 3 rows x 1 column of the 3 x 4 windows
    assert bool((out.classes[:, 20:] == 255).all()) and bool((out.classes[:, :20] < 3).all())
    # nodata pixels never reach the network: the map of the image with NaN there
    full = predict_array(pred, image.masked_fill(~valid, float("nan")), window=32, overlap=8)
    torch.testing.assert_close(out.probabilities[:, :, :20], full.probabilities[:, :, :20])


def test_predictor_is_safe_across_threads() -> None:
    """functional_call swaps tensors into the module: without the predictor's lock,
    concurrent forwards of an adapted predictor were seen to mix weights."""
    from concurrent.futures import ThreadPoolExecutor

    from landcover.inference.adapt import adapt_bundle

    bundle = tiny_bundle(3, 3, mean=10.0, std=5.0)
    x, y = torch.rand(2, 3, 32, 32) * 20, torch.randint(0, 3, (2, 32, 32))
    pred = Predictor.from_bundle(adapt_bundle(bundle, x, y, steps=3).bundle)
    images = [torch.rand(3, 96, 80) * 40 for _ in range(8)]
    want = [predict_array(pred, im, window=32, overlap=8).probabilities for im in images]
    for _ in range(3):
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(
                lambda im: predict_array(pred, im, window=32, overlap=8).probabilities, images
            ))  # fmt: skip
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_balanced_window_computes_fewer_pixels() -> None:
    from landcover.inference.sliding import balanced_window, window_starts

    def cost(w: int) -> int:
        return len(window_starts(10980, w, 128)) ** 2 * w * w

    w = balanced_window(10980, 10980, 2048, 128)
    assert w % 8 == 0 and 1024 <= w <= 2048
    assert cost(w) < cost(2048) and cost(w) <= min(cost(v) for v in range(1024, 2049, 8))
    assert balanced_window(500, 700, 2048, 128) >= 700  # one window covers a small raster


def test_strided_network_windows_land_on_its_pooling_grid() -> None:
    """A stride-4 U-Net (size divisor 16) with a window and overlap that are not multiples
    of 16: they are rounded up onto the pooling grid. Off the grid the blend is 4.7e-3 away
    from the whole-image pass; on it, 2.4e-4 (the rest is the 4x larger receptive field
    reaching past the narrow overlap)."""
    bundle = tiny_bundle(3, 3, model_options={"width": 4, "depth": 2, "norm": "none",
                                              "stride": 4},
                         mean=10.0, std=5.0, learner="mamlpp", seed=2)  # fmt: skip
    pred = Predictor.from_bundle(bundle)
    assert pred.size_divisor == 16
    plan = WindowPlan.make(150, 203, 100, 30, pred.size_divisor)
    assert all(s % 16 == 0 for s in plan.row_starts + plan.col_starts)
    torch.manual_seed(5)
    image = torch.rand(3, 150, 203) * 40
    full = pred.probabilities(image[None])[0]
    out = predict_array(pred, image, window=100, overlap=30, batch_size=2).probabilities
    torch.testing.assert_close(out, full, rtol=0, atol=1e-3)


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_pooling_network_blends_to_its_whole_image_output(engine: str) -> None:
    """A U-Net with pooling (size divisor 4) on a raster whose sides are not multiples
    of 4: the raster is mirrored to a multiple, every window starts on the pooling grid,
    and inside the 3/8 margin every window computes what the whole-image pass computes,
    so the blend equals one forward pass over the whole image."""
    bundle = tiny_bundle(3, 3, model_options={"width": 4, "depth": 2, "norm": "none"},
                         mean=10.0, std=5.0, learner="mamlpp", seed=2)  # fmt: skip
    pred = Predictor.from_bundle(bundle, engine=engine)
    assert pred.size_divisor == 4
    torch.manual_seed(5)
    image = torch.rand(3, 150, 203) * 40
    full = pred.probabilities(image[None])[0]  # pads to 152 x 204 by mirroring
    out = predict_array(pred, image, window=96, overlap=64, batch_size=2).probabilities
    torch.testing.assert_close(out, full, rtol=0, atol=2e-5)
