from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from landcover.models import build_from_config, build_model, count_parameters
from landcover.models.norm import convert_norm, count_norms, group_count
from landcover.models.smp_unet import Dropped

CASES = [
    ("small_unet", {}),
    ("small_unet", {"norm": "group", "width": 8, "depth": 2}),
    ("small_unet", {"norm": "none", "depth": 0}),
    ("small_unet", {"width": 4, "depth": 2, "stride": 4}),
    ("smp:resnet18", {"encoder_depth": 3}),
    ("smp:resnet18", {"encoder_depth": 4, "norm": "group"}),
    ("smp:efficientnet-b0", {"encoder_depth": 3}),
]


def _grads(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
    params = dict(model.named_parameters())
    loss = model(x).square().mean()
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return dict(zip(params, grads))


@pytest.mark.parametrize(("arch", "options"), CASES)
def test_every_parameter_gets_a_gradient(arch: str, options: dict) -> None:
    model = build_model(arch, 4, 5, **options)
    x = torch.randn(2, 4, 32, 32)
    grads = _grads(model, x)
    missing = [n for n, g in grads.items() if g is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    # and the gradients are not all zero (every stage really contributes)
    assert all(g.abs().sum() > 0 for n, g in grads.items() if n.endswith("weight"))


@pytest.mark.parametrize(("arch", "options"), CASES)
def test_body_head_embed_shapes(arch: str, options: dict) -> None:
    model = build_model(arch, 3, 7, **options).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = model.body(x)
    assert isinstance(feats, list) and len(feats) >= 1
    logits = model(x)
    assert logits.shape == (2, 7, 32, 32)
    torch.testing.assert_close(logits, model.head(model.body(x)))
    emb = model.embed(x)
    assert emb.shape == (2, model.embedding_channels, 32, 32)
    torch.testing.assert_close(logits, model.head.classifier(emb))
    assert isinstance(model.head.classifier, nn.Conv2d)
    assert model.head.classifier.kernel_size == (1, 1)


def test_small_unet_size_and_odd_inputs() -> None:
    model = build_model("small_unet", 4, 6)
    assert 350_000 < count_parameters(model) < 650_000
    assert model(torch.randn(1, 4, 37, 53)).shape == (1, 6, 37, 53)


@pytest.mark.parametrize("depth", [3, 4])
def test_smp_unused_stages_are_dropped(depth: int) -> None:
    model = build_model("smp:resnet18", 4, 3, encoder_depth=depth)
    enc = model.body.encoder
    assert isinstance(enc.layer4, Dropped)
    assert isinstance(enc.layer3, Dropped) == (depth == 3)
    # dropping did not change the output: compare with the untouched smp encoder
    import segmentation_models_pytorch as smp

    ref = smp.encoders.get_encoder("resnet18", in_channels=4, depth=depth, weights=None)
    ref.load_state_dict(enc.state_dict(), strict=False)
    x = torch.randn(1, 4, 64, 64)
    ref.eval()
    model.eval()
    for a, b in zip(ref(x), model.body(x), strict=True):
        torch.testing.assert_close(a, b)


def test_config_round_trip_is_json() -> None:
    model = build_model("smp:resnet18", 4, 3, encoder_depth=3, norm="group")
    config = json.loads(json.dumps(model.config))
    again = build_from_config(config)
    assert again.config == model.config
    assert again.state_dict().keys() == model.state_dict().keys()
    again.load_state_dict(model.state_dict())


def test_norm_policies() -> None:
    assert count_norms(build_model("small_unet", 3, 2, norm="batch")) == {"batch": 14, "group": 0}
    assert count_norms(build_model("small_unet", 3, 2, norm="group"))["batch"] == 0
    assert count_norms(build_model("small_unet", 3, 2, norm="none")) == {"batch": 0, "group": 0}
    g = count_norms(build_model("smp:resnet18", 3, 2, encoder_depth=3, norm="group"))
    assert g["batch"] == 0 and g["group"] > 0
    assert group_count(24, 8) == 8 and group_count(12, 8) == 4 and group_count(7, 8) == 1


def test_convert_norm_keeps_affine() -> None:
    bn = nn.BatchNorm2d(16)
    bn.weight.data.uniform_()
    bn.bias.data.uniform_()
    seq = convert_norm(nn.Sequential(nn.Conv2d(3, 16, 3), bn), "group")
    gn = seq[1]
    assert isinstance(gn, nn.GroupNorm)
    torch.testing.assert_close(gn.weight, bn.weight)
    torch.testing.assert_close(gn.bias, bn.bias)


@pytest.mark.parametrize(
    ("arch", "options", "match"),
    [
        ("unet3000", {}, "unknown architecture"),
        ("small_unet", {"widht": 3}, "unknown small_unet option"),
        ("small_unet", {"norm": "instance"}, "unknown norm"),
        ("smp:resnet18", {"encoder_weights": "imagenet"}, "only these ship inside pip packages"),
        ("smp:resnet18", {"encoder_depth": 2}, "encoder_depth"),
        ("smp:resnet18", {"decoder_channels": [8, 8]}, "decoder_channels"),
        ("small_unet", {"width": object()}, "JSON"),
    ],
)
def test_bad_options_are_clear_errors(arch: str, options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model(arch, 3, 2, **options)


def test_unknown_encoder_lists_valid_ones() -> None:
    with pytest.raises(KeyError, match="resnet18"):
        build_model("smp:resnet19", 3, 2)


def test_wrong_band_count_is_clear() -> None:
    with pytest.raises(ValueError, match="expects images of shape"):
        build_model("small_unet", 4, 2)(torch.randn(1, 3, 16, 16))
