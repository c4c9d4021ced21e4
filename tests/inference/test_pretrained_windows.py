"""A pretrained-encoder map does not depend on the prediction window (issue 20, item 6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from landcover.inference.predict import Predictor, default_window, predict_array
from landcover.inference.testing import tiny_bundle

DUBAI = Path(__file__).resolve().parents[2] / "data" / "samples" / "dubai-aerial"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "dubai-aerial"


def _real_tile() -> np.ndarray:
    from PIL import Image

    for root in (DUBAI, SHARED):
        found = sorted(root.glob("Tile 4/images/*.jpg"))
        if found:
            return np.asarray(Image.open(found[0]).convert("RGB"))
    pytest.skip("no dubai-aerial sample imagery found")


@pytest.mark.slow
def test_map_is_the_same_at_windows_256_512_and_whole_raster():
    image = torch.from_numpy(_real_tile().copy()).permute(2, 0, 1).float()
    h, w = image.shape[-2:]
    bundle = tiny_bundle(
        3, 6, arch="smp:tu-tf_efficientnet_lite0",
        model_options={"encoder_weights": "imagenet", "freeze_encoder": True, "decoder": "fpn",
                       "norm": "layer"},
        learner_options={"steps": 1, "inner_lr": 0.1, "adapt": ["head.classifier"]},
        tile_size=256, mean=[110.0, 110.0, 100.0], std=[50.0, 50.0, 50.0],
    )  # fmt: skip
    predictor = Predictor.from_bundle(bundle)
    whole = predict_array(predictor, image, window=max(h, w) + 32, overlap=0).classes
    assert len(torch.unique(whole)) >= 2  # a map with structure, not one class
    # the default windows (1024 px for a pretrained encoder) match the whole raster
    assert default_window(bundle) == 1024
    default = predict_array(predictor, image).classes
    assert float((default == whole).float().mean()) >= 0.995
    # smaller windows cut the deep features' view short near their borders: near, not equal
    agreements = {
        w: float((predict_array(predictor, image, window=w).classes == whole).float().mean())
        for w in (256, 512)
    }
    assert agreements[512] >= 0.95 and agreements[256] >= 0.85, agreements
    assert agreements[512] > agreements[256]
