"""A small U-Net for CPU meta-training (about 0.5 M parameters by default).

Ronneberger, Fischer & Brox (2015), "U-Net: Convolutional Networks for Biomedical Image
Segmentation": an encoder of double 3x3 convolutions and 2x2 max-pooling, a decoder that
upsamples, concatenates the encoder's skip connection and applies a double 3x3
convolution. Here the upsampling is bilinear interpolation to the skip's size (so any
input size works, odd sizes included) and every convolution is followed by the chosen
normalisation (:mod:`landcover.models.norm`) and a ReLU. Width and depth are options: with
``width=16, depth=3`` the channels are 16-32-64-128 and the model has ~0.47 M parameters.

``stride`` (default 1) runs the whole U-Net at ``1 / stride`` of the input resolution: the
input is average-pooled by ``stride`` and the logits are upsampled bilinearly back to the
input size, as DeepLab does (Chen et al. 2018); the embedding of ``embed`` is upsampled the
same way, and as the 1x1 classifier commutes with bilinear upsampling the two agree. For
sub-metre imagery whose classes are city blocks, fields and water bodies, this buys
``stride ** 2`` times more context per unit of compute: a 256-px tile at stride 4
costs what a 64-px tile costs at stride 1. Maps, masks and losses stay at the input's
resolution, so every consumer (meta-learners, prediction, ONNX export) is unchanged.

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
from landcover.models.upsample import upsample_to

#: Options of ``build_model("small_unet", ...)`` and their defaults.
SMALL_UNET_DEFAULTS: dict[str, Any] = {
    "width": 16,
    "depth": 3,
    "norm": "batch",
    "groups": DEFAULT_GROUPS,
    "stride": 1,
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
    resolution with ``width * 2**i`` channels. With ``stride > 1`` the input is first
    average-pooled by ``stride`` and the list starts with a zero-channel tensor at the
    input's size (it carries that size to the decoder), then ``f_i`` at
    ``1 / (stride * 2**i)``.
    """

    def __init__(
        self, in_channels: int, width: int, depth: int, norm: str, groups: int, stride: int = 1
    ) -> None:
        super().__init__()
        chans = [width * 2**i for i in range(depth + 1)]
        self.channels = chans
        self.stride = stride
        self.stages = nn.ModuleList(
            DoubleConv(cin, cout, norm, groups)
            for cin, cout in zip([in_channels, *chans[:-1]], chans)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        """Feature maps from fine to coarse."""
        features = []
        if self.stride > 1:
            features.append(x[:, :0])
            x = F.avg_pool2d(x, self.stride, ceil_mode=True)
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = stage(x)
            features.append(x)
        return features


class SmallUNetDecoder(nn.Module):
    """Decoder: upsample, concatenate the skip, double convolution; ``depth`` times."""

    def __init__(self, channels: list[int], norm: str, groups: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        ups = []
        for i in range(len(channels) - 1, 0, -1):
            ups.append(DoubleConv(channels[i] + channels[i - 1], channels[i - 1], norm, groups))
        self.blocks = nn.ModuleList(ups)

    def forward(self, features: list[Tensor]) -> Tensor:
        """Embedding with ``width`` channels at the input resolution.

        With ``stride > 1`` it is at ``1 / stride`` of it (:class:`SegmentationHead`
        upsamples).
        """
        if self.stride > 1:
            features = features[1:]
        x = features[-1]
        for block, skip in zip(self.blocks, reversed(features[:-1])):
            x = upsample_to(x, skip.shape[-2:])
            x = block(torch.cat([x, skip], dim=1))
        return x


def build_small_unet(in_channels: int, num_classes: int, **options: Any) -> SegmentationModel:
    """Build the small U-Net.

    Args:
        in_channels: Input bands.
        num_classes: Output classes.
        **options: ``width`` (channels of the first stage, default 16), ``depth`` (number
            of poolings, default 3), ``norm`` (``"batch"``, ``"group"`` or ``"none"``),
            ``groups`` (max GroupNorm groups, default 8), ``stride`` (run the network at
            ``1 / stride`` of the input resolution, default 1; see the module docstring).

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
    width, depth, norm, groups, stride = (
        int(opts["width"]),
        int(opts["depth"]),
        check_norm(str(opts["norm"])),
        int(opts["groups"]),
        int(opts["stride"]),
    )
    if width < 1 or not 0 <= depth <= 6:
        raise ValueError(f"small_unet needs width >= 1 and 0 <= depth <= 6; got {width}, {depth}")
    if not 1 <= stride <= 16:
        raise ValueError(f"small_unet needs 1 <= stride <= 16; got stride={stride}")
    opts.update(width=width, depth=depth, norm=norm, groups=groups, stride=stride)
    encoder = SmallUNetEncoder(in_channels, width, depth, norm, groups, stride)
    decoder = SmallUNetDecoder(encoder.channels, norm, groups, stride)
    return SegmentationModel(
        "small_unet",
        encoder,
        SegmentationHead(decoder, width, num_classes, stride=stride),
        in_channels=in_channels,
        num_classes=num_classes,
        size_divisor=stride * 2**depth,
        options=opts,
    )
