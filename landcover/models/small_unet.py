"""A small U-Net for CPU meta-training (about 0.5 M parameters by default).

Ronneberger, Fischer & Brox (2015), "U-Net: Convolutional Networks for Biomedical Image
Segmentation": an encoder of double 3x3 convolutions and 2x2 max-pooling, a decoder that
upsamples, concatenates the encoder's skip connection and applies a double 3x3
convolution. Here the upsampling is bilinear interpolation to the skip's size (so any
input size works, odd sizes included) and every convolution is followed by the chosen
normalisation (:mod:`landcover.models.norm`) and a ReLU. Width and depth are options: with
``width=16, depth=3`` the channels are 16-32-64-128 and the model has ~0.47 M parameters.

Every parameter takes part in the forward pass, so ``torch.autograd.grad`` over all
parameters never meets an unused one.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from landcover.models.norm import DEFAULT_GROUPS, check_norm, make_norm
from landcover.models.segmentation import SegmentationHead, SegmentationModel

#: Options of ``build_model("small_unet", ...)`` and their defaults.
SMALL_UNET_DEFAULTS: dict[str, Any] = {
    "width": 16,
    "depth": 3,
    "norm": "batch",
    "groups": DEFAULT_GROUPS,
}


class DoubleConv(nn.Sequential):
    """(3x3 conv -> norm -> ReLU) twice."""

    def __init__(self, cin: int, cout: int, norm: str, groups: int) -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=bias),
            make_norm(norm, cout, groups),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=bias),
            make_norm(norm, cout, groups),
            nn.ReLU(),
        )


class SmallUNetEncoder(nn.Module):
    """Encoder: ``depth + 1`` double convolutions with max-pooling in between.

    ``forward(x)`` returns ``[f0, f1, ..., f_depth]``, ``f_i`` at ``1 / 2**i`` of the input
    resolution with ``width * 2**i`` channels.
    """

    def __init__(self, in_channels: int, width: int, depth: int, norm: str, groups: int) -> None:
        super().__init__()
        chans = [width * 2**i for i in range(depth + 1)]
        self.channels = chans
        self.stages = nn.ModuleList(
            DoubleConv(cin, cout, norm, groups)
            for cin, cout in zip([in_channels, *chans[:-1]], chans)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        """Feature maps from fine to coarse."""
        features = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = stage(x)
            features.append(x)
        return features


class SmallUNetDecoder(nn.Module):
    """Decoder: upsample, concatenate the skip, double convolution; ``depth`` times."""

    def __init__(self, channels: list[int], norm: str, groups: int) -> None:
        super().__init__()
        ups = []
        for i in range(len(channels) - 1, 0, -1):
            ups.append(DoubleConv(channels[i] + channels[i - 1], channels[i - 1], norm, groups))
        self.blocks = nn.ModuleList(ups)

    def forward(self, features: list[Tensor]) -> Tensor:
        """Embedding at the input resolution with ``width`` channels."""
        x = features[-1]
        for block, skip in zip(self.blocks, reversed(features[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return x


def build_small_unet(in_channels: int, num_classes: int, **options: Any) -> SegmentationModel:
    """Build the small U-Net.

    Args:
        in_channels: Input bands.
        num_classes: Output classes.
        **options: ``width`` (channels of the first stage, default 16), ``depth`` (number
            of poolings, default 3), ``norm`` (``"batch"``, ``"group"`` or ``"none"``),
            ``groups`` (max GroupNorm groups, default 8).

    Returns:
        A :class:`SegmentationModel` with ``body`` = encoder, ``head`` = decoder + 1x1 conv.

    Raises:
        ValueError: An unknown option or an invalid value.
    """
    unknown = sorted(set(options) - set(SMALL_UNET_DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown small_unet option(s) {unknown}; valid: {sorted(SMALL_UNET_DEFAULTS)}"
        )
    opts = {**SMALL_UNET_DEFAULTS, **options}
    width, depth, norm, groups = (
        int(opts["width"]),
        int(opts["depth"]),
        check_norm(str(opts["norm"])),
        int(opts["groups"]),
    )
    if width < 1 or not 0 <= depth <= 6:
        raise ValueError(f"small_unet needs width >= 1 and 0 <= depth <= 6; got {width}, {depth}")
    opts.update(width=width, depth=depth, norm=norm, groups=groups)
    encoder = SmallUNetEncoder(in_channels, width, depth, norm, groups)
    decoder = SmallUNetDecoder(encoder.channels, norm, groups)
    return SegmentationModel(
        "small_unet",
        encoder,
        SegmentationHead(decoder, width, num_classes),
        in_channels=in_channels,
        num_classes=num_classes,
        size_divisor=2**depth,
        options=opts,
    )
