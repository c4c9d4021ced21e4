"""The per-pixel spectral path beside the FPN decoder (``spectral_channels``)."""

from __future__ import annotations

import pytest
import torch

from landcover.meta.registry import build_learner
from landcover.models import build_model
from landcover.models.spectral_skip import SpectralSkip

OPTIONS = {"encoder_weights": "imagenet", "freeze_encoder": True, "decoder": "fpn",
           "norm": "layer", "rgb_bands": [2, 1, 0]}  # fmt: skip


def _model(spectral: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("smp:tu-tf_efficientnet_lite0", 5, 7, spectral_channels=spectral, **OPTIONS)


def test_spectral_channels_join_the_embedding_at_full_resolution() -> None:
    model = _model(8).eval()
    assert isinstance(model.head.decoder, SpectralSkip)
    assert model.head.stride == 1 and model.embedding_channels == 32 + 8
    x = torch.randn(2, 5, 64, 64)
    with torch.no_grad():
        assert model(x).shape == (2, 7, 64, 64)
        assert model.embed(x).shape == (2, 40, 64, 64)
    # a pixel's near-infrared value reaches its own logits through the spectral path
    x = x[:1].clone().requires_grad_(True)
    model(x)[0, :, 20, 21].sum().backward()
    assert x.grad is not None and x.grad[0, 3, 20, 21].abs() > 0
    # and its spectral channels depend on that pixel only (no window, no batch)
    with torch.no_grad():
        whole = model.head.decoder.pixel(x.detach())
        crop = model.head.decoder.pixel(x.detach()[..., 16:48, 16:48])
    assert torch.allclose(whole[..., 16:48, 16:48], crop, atol=1e-6)


def test_default_is_unchanged_and_options_rebuild_the_same_network() -> None:
    plain = _model(0)
    assert not isinstance(plain.head.decoder, SpectralSkip) and plain.head.stride == 4
    model = _model(8)
    again = build_model(model.arch, 5, 7, **model.options)
    assert again.options["spectral_channels"] == 8
    again.load_state_dict(model.state_dict(), strict=True)
    with pytest.raises(ValueError, match="spectral_channels"):
        _model(-1)


def test_mamlpp_can_adapt_the_spectral_path_with_the_classifier() -> None:
    model = _model(8)
    loss = torch.nn.CrossEntropyLoss(ignore_index=255)
    learner = build_learner(
        "mamlpp", model, loss, steps=1, inner_lr=0.1, first_order_epochs=1000,
        adapt=["head.classifier", "head.decoder.pixel"],
    )  # fmt: skip
    names = set(learner.adapt_names)
    assert "head.classifier.weight" in names and "head.decoder.pixel.0.weight" in names
    assert not any(n.startswith("head.decoder.decoder") for n in names)
