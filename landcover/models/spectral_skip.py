"""A per-pixel spectral path beside a coarse decoder: every band reaches the classifier.

A frozen ImageNet encoder sees three bands as RGB; every other band (near and short-wave
infrared of a multispectral scene) reaches it only as a share of the mean filter
(:func:`landcover.models.pretrained.adapt_stem`), i.e. as brightness. And the FPN decoder
works at 1/4 of the input, so a 2-px road or a field edge at 28.5 m is blurred away before
the classifier sees it. What a random forest on the bands and a filter bank reads first,
each pixel's spectrum, is thus nearly lost to the network, and adapting its 1x1 classifier
on a few tiles cannot bring it back (issue 23: MAML++ below the analyst's forest on a 5-band
scene).

:class:`SpectralSkip` wraps the decoder: the decoder's map is upsampled to the input's size
and concatenated with a small per-pixel network of the input bands (two 1x1 convolutions,
each followed by per-pixel LayerNorm and ReLU), so the embedding the classifier sees (and
the inner loop adapts on) holds the pixel's own spectrum next to its context. It works on
``features[0]``, the standardised input that every encoder of the factory passes first,
depends on no statistics of the window or the batch, and costs two 1x1 convolutions per
pixel. The head then runs at stride 1 (the classifier on full-resolution embeddings).

Built by ``build_model("smp:...", ..., spectral_channels=K)``; ``K = 0`` (the default)
leaves the model as it was.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from landcover.models.norm import pixel_layer_norm
from landcover.models.upsample import upsample_to


class SpectralSkip(nn.Module):
    """``features -> concat(upsample(decoder(features)), pixel_net(features[0]))``.

    Args:
        decoder: The coarse decoder (feature list -> ``(N, E, h, w)``).
        in_channels: Bands of the input (``features[0]``).
        channels: ``K``, channels of the per-pixel spectral embedding.
        embedding: ``E``, channels of the decoder's output.

    Attributes:
        out_channels: ``E + K``, channels of the output (the classifier's input).
    """

    def __init__(self, decoder: nn.Module, in_channels: int, channels: int, embedding: int) -> None:
        super().__init__()
        if int(channels) < 1:
            raise ValueError(f"spectral_channels must be >= 1 here; got {channels}")
        self.decoder = decoder
        k = int(channels)
        self.pixel = nn.Sequential(
            nn.Conv2d(in_channels, k, kernel_size=1),
            pixel_layer_norm(k),
            nn.ReLU(),
            nn.Conv2d(k, k, kernel_size=1),
            pixel_layer_norm(k),
            nn.ReLU(),
        )
        self.out_channels = int(embedding) + k

    def forward(self, features: list[Tensor]) -> Tensor:
        """Full-resolution embeddings ``(N, E + K, H, W)``."""
        x = features[0]
        coarse = self.decoder(features)
        if coarse.shape[-2:] != x.shape[-2:]:
            coarse = upsample_to(coarse, x.shape[-2:])
        return torch.cat([coarse, self.pixel(x)], dim=1)
