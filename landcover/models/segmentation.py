"""The shape every segmentation model of the factory shares: ``body`` + ``head``.

Meta-learners address parts of the network by parameter name (ANIL adapts only the head,
Raghu et al. 2020; "adapt only the decoder" runs the encoder once per task), and
prototype learners need per-pixel embeddings before the classifier (Snell et al. 2017,
with masked average pooling as in Dong & Xing 2018). So every model of
:func:`landcover.models.factory.build_model` is a :class:`SegmentationModel` with

* ``body``: the encoder, ``x -> list of feature maps`` (finest first);
* ``head``: a :class:`SegmentationHead` = ``decoder`` (features -> per-pixel embedding)
  followed by a 1x1 convolution ``classifier`` (embedding -> class logits);

and ``forward(x) == head(body(x))``, ``embed(x) == head.decoder(body(x))``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from landcover.models.upsample import upsample_to


class SegmentationHead(nn.Module):
    """Decoder followed by a 1x1 classifier.

    Args:
        decoder: Module mapping the encoder's feature list to one ``(N, E, H, W)`` map.
        embedding_channels: ``E``, the number of channels of the decoder's output.
        num_classes: Number of output classes.
        stride: With ``stride > 1`` the decoder works at ``1 / stride`` of the input
            resolution and ``features[0]`` is a tensor of the input's size: logits and
            embeddings are upsampled bilinearly to it (logits after the classifier, which
            is ``stride**2`` times cheaper than classifying upsampled embeddings and equal
            to it, as a 1x1 convolution commutes with bilinear interpolation).
    """

    def __init__(
        self, decoder: nn.Module, embedding_channels: int, num_classes: int, stride: int = 1
    ) -> None:
        super().__init__()
        self.decoder = decoder
        self.classifier = nn.Conv2d(embedding_channels, num_classes, kernel_size=1)
        self.stride = int(stride)

    def to_input_size(self, x: Tensor, size: Any) -> Tensor:
        """Decoder-resolution maps ``x`` at the input's ``size`` (identity at stride 1)."""
        return x if self.stride == 1 else upsample_to(x, size)

    def _upsample(self, x: Tensor, features: list[Tensor]) -> Tensor:
        return self.to_input_size(x, features[0].shape[-2:])

    def embed(self, features: list[Tensor]) -> Tensor:
        """Per-pixel embeddings ``(N, E, H, W)`` (the classifier's input)."""
        return self._upsample(self.decoder(features), features)

    def forward(self, features: list[Tensor]) -> Tensor:
        """Class logits ``(N, num_classes, H, W)``."""
        return self._upsample(self.classifier(self.decoder(features)), features)


class SegmentationModel(nn.Module):
    """An encoder ``body`` and a :class:`SegmentationHead` ``head``.

    Attributes:
        arch: Factory name of the architecture (``"small_unet"``, ``"smp:resnet18"``).
        in_channels: Number of input bands.
        num_classes: Number of output classes.
        embedding_channels: Channels of :meth:`embed`'s output.
        size_divisor: Inputs whose height and width are multiples of this give outputs
            aligned pixel for pixel with the input without resampling (sliding-window
            prediction pads windows to it).
        options: The JSON-serialisable options the factory was called with, defaults
            filled in; ``build_model(arch, in_channels, num_classes, **options)`` rebuilds
            the same architecture.
    """

    def __init__(
        self,
        arch: str,
        body: nn.Module,
        head: SegmentationHead,
        *,
        in_channels: int,
        num_classes: int,
        size_divisor: int,
        options: dict[str, Any],
    ) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.arch = arch
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.embedding_channels = head.classifier.in_channels
        self.size_divisor = size_divisor
        self.options = dict(options)

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild the architecture (JSON-serialisable)."""
        return {
            "arch": self.arch,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "options": dict(self.options),
        }

    def embed(self, x: Tensor) -> Tensor:
        """Per-pixel embeddings ``(N, E, H, W)`` before the 1x1 classifier."""
        return self.head.embed(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(N, num_classes, H, W)`` for images ``(N, in_channels, H, W)``."""
        if x.ndim < 3 or x.shape[-3] != self.in_channels:
            raise ValueError(
                f"{self.arch} expects images of shape (N, {self.in_channels}, H, W); "
                f"got {tuple(x.shape)}"
            )
        return self.head(self.body(x))
