"""The small U-Net's ``stride`` option: context for sub-metre imagery at 1/stride² the cost."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from landcover.models import build_from_config, build_model


def _model(stride: int, **options: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("small_unet", 3, 5, width=4, depth=2, norm="none", stride=stride, **options)


@pytest.mark.parametrize("shape", [(64, 64), (61, 70), (5, 9)])
def test_outputs_stay_at_the_input_resolution(shape: tuple[int, int]) -> None:
    model = _model(4).eval()
    x = torch.randn(2, 3, *shape)
    assert model(x).shape == (2, 5, *shape)
    assert model.embed(x).shape == (2, 4, *shape)
    assert model.size_divisor == 4 * 2**2


def test_stride_equals_the_stride_one_net_on_pooled_input_with_upsampled_logits() -> None:
    """stride s == stride 1 on avg-pooled input, logits upsampled bilinearly (same weights)."""
    strided, plain = _model(4).eval(), _model(1).eval()
    plain.load_state_dict(strided.state_dict())
    x = torch.randn(2, 3, 64, 48)
    expected = F.interpolate(
        plain(F.avg_pool2d(x, 4)), size=(64, 48), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(strided(x), expected, rtol=1e-5, atol=1e-5)


def test_embed_then_classifier_equals_forward() -> None:
    """The 1x1 classifier commutes with the bilinear upsampling (prototype heads use embed)."""
    model = _model(3).eval()
    x = torch.randn(2, 3, 40, 50)
    logits = model.head.classifier(model.embed(x))
    torch.testing.assert_close(logits, model(x), rtol=1e-5, atol=1e-5)


def test_gradients_match_finite_differences() -> None:
    model = _model(2).double()
    x = torch.randn(1, 3, 6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: model(t).square().mean(), (x,))
    params = list(model.parameters())
    weight = params[0]
    loss = model(x.detach()).square().mean()
    (grad,) = torch.autograd.grad(loss, [weight])
    eps, idx = 1e-6, (1, 2, 1, 0)
    with torch.no_grad():
        weight[idx] += eps
        up = model(x.detach()).square().mean()
        weight[idx] -= 2 * eps
        down = model(x.detach()).square().mean()
        weight[idx] += eps
    assert float(grad[idx]) == pytest.approx(float((up - down) / (2 * eps)), rel=1e-5, abs=1e-9)


def test_config_round_trip_keeps_the_stride() -> None:
    model = _model(4)
    rebuilt = build_from_config(model.config)
    assert rebuilt.options["stride"] == 4
    assert rebuilt.size_divisor == model.size_divisor


@pytest.mark.parametrize("stride", [0, 17])
def test_bad_stride_is_a_clear_error(stride: int) -> None:
    with pytest.raises(ValueError, match="stride"):
        _model(stride)
