import math

import pytest
import torch

from landcover.evaluation.metrics import (
    logits_to_classes,
    mean_interval,
    paired_difference,
    segmentation_metric_collection,
    segmentation_scores,
)

# 2x3 maps; the last truth pixel is unlabeled (255). On the 5 labeled pixels:
# truth 0 0 1 1 2, prediction 0 1 1 1 2; class 3 of 4 appears nowhere.
TRUTH = torch.tensor([[0, 0, 1], [1, 2, 255]])
PRED = torch.tensor([[0, 1, 1], [1, 2, 0]])


def test_scores_match_hand_computed_values():
    s = segmentation_scores(PRED, TRUTH, num_classes=4, ignore_index=255)
    # IoU: class 0 = 1/2, class 1 = 2/3, class 2 = 1; class 3 absent from both: excluded.
    assert s["miou"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3, abs=1e-6)
    assert s["accuracy"] == pytest.approx(4 / 5, abs=1e-6)
    # kappa: p_o = 0.8, p_e = (2*1 + 2*3 + 1*1) / 25 = 0.36
    assert s["kappa"] == pytest.approx((0.8 - 0.36) / (1 - 0.36), abs=1e-6)


def test_ignored_pixel_really_ignored():
    pred = PRED.clone()
    pred[1, 2] = 3  # changing the prediction under an ignored pixel changes nothing
    assert segmentation_scores(pred, TRUTH, 4) == segmentation_scores(PRED, TRUTH, 4)


def test_perfect_and_all_ignored():
    s = segmentation_scores(TRUTH.clamp(max=2), TRUTH.clamp(max=2), 3, ignore_index=None)
    assert s == {"miou": 1.0, "accuracy": 1.0, "kappa": 1.0}
    empty = segmentation_scores(PRED, torch.full_like(TRUTH, 255), 4)
    assert all(math.isnan(v) for v in empty.values())


def test_collection_agrees_with_function():
    coll = segmentation_metric_collection(4, 255, prefix="val/")
    coll.update(PRED, TRUTH)
    out = {k: float(v) for k, v in coll.compute().items()}
    ref = segmentation_scores(PRED, TRUTH, 4)
    assert out["val/miou"] == pytest.approx(ref["miou"], abs=1e-6)
    assert out["val/accuracy"] == pytest.approx(ref["accuracy"], abs=1e-6)
    assert out["val/kappa"] == pytest.approx(ref["kappa"], abs=1e-6)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="argmax"):
        segmentation_scores(torch.zeros(2, 4, 2, 3), TRUTH, 4)


def test_logits_to_classes():
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, 2, 0, 0] = 1.0
    logits[0, 1, 0, 1] = 1.0
    assert logits_to_classes(logits).tolist() == [[[2, 1]]]


def test_t_interval_hand_computed():
    iv = mean_interval([1.0, 2.0, 3.0, 4.0])
    # sd = sqrt(5/3), se = sd / 2, t_{0.975, 3} = 3.182446
    half = 3.182446 * math.sqrt(5 / 3) / 2
    assert iv.mean == 2.5 and iv.n == 4
    assert iv.low == pytest.approx(2.5 - half, abs=1e-5)
    assert iv.high == pytest.approx(2.5 + half, abs=1e-5)
    assert mean_interval([math.nan, 1.0]).n == 1
    assert math.isnan(mean_interval([]).mean)


def test_paired_difference_removes_shared_task_variance():
    a = [0.1, 0.5, 0.9, 0.3]
    b = [x - 0.05 for x in a]
    d = paired_difference(a, b)
    assert d.mean == pytest.approx(0.05) and d.half_width == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="same tasks"):
        paired_difference([1.0], [1.0, 2.0])
