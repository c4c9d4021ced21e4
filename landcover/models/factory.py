"""``build_model``: one entry point for every segmentation network of landcover.

Architectures are named by strings so that configs, model bundles and the REST service
can store them as JSON:

* ``"small_unet"``: the CPU-sized U-Net of :mod:`landcover.models.small_unet`;
* ``"smp:<encoder>"``: a segmentation-models-pytorch U-Net with that encoder
  (:mod:`landcover.models.smp_unet`), e.g. ``"smp:resnet18"``.

``build_model(**model.config)``-style round trips rebuild the same architecture:
``build_model(m.arch, m.in_channels, m.num_classes, **m.options)``.
"""

from __future__ import annotations

import json
from typing import Any

from landcover.models.segmentation import SegmentationModel
from landcover.models.small_unet import build_small_unet
from landcover.models.smp_unet import build_smp_unet

#: Architecture names (``smp:`` takes any smp encoder after the colon).
ARCHS: tuple[str, ...] = ("small_unet", "smp:<encoder>")


def build_model(arch: str, in_channels: int, num_classes: int, **options: Any) -> SegmentationModel:
    """Build a segmentation model.

    Args:
        arch: ``"small_unet"`` or ``"smp:<encoder>"`` (e.g. ``"smp:resnet18"``).
        in_channels: Number of input bands (from the data).
        num_classes: Number of classes (from the data's class scheme).
        **options: Architecture options (JSON-serialisable); see
            :data:`landcover.models.small_unet.SMALL_UNET_DEFAULTS` and
            :data:`landcover.models.smp_unet.SMP_DEFAULTS`.

    Returns:
        A :class:`SegmentationModel` (``body``, ``head``, ``embed``, ``config``).

    Raises:
        ValueError: Unknown architecture, bad sizes or options, or non-JSON options.
        KeyError: Unknown smp encoder.
    """
    if int(in_channels) < 1 or int(num_classes) < 1:
        raise ValueError(
            f"in_channels and num_classes must be >= 1; got {in_channels}, {num_classes}"
        )
    try:
        json.dumps(options)
    except TypeError as exc:
        raise ValueError(
            f"model options must be JSON-serialisable (they go into the model bundle): {exc}"
        ) from exc
    if arch == "small_unet":
        return build_small_unet(int(in_channels), int(num_classes), **options)
    if arch.startswith("smp:") and len(arch) > 4:
        return build_smp_unet(arch[4:], int(in_channels), int(num_classes), **options)
    raise ValueError(f"unknown architecture {arch!r}; valid: {list(ARCHS)}")


def build_from_config(config: dict[str, Any]) -> SegmentationModel:
    """Rebuild a model from :attr:`SegmentationModel.config` (as stored in a bundle)."""
    missing = {"arch", "in_channels", "num_classes"} - set(config)
    if missing:
        raise KeyError(f"model config lacks {sorted(missing)}; it has {sorted(config)}")
    return build_model(
        config["arch"],
        config["in_channels"],
        config["num_classes"],
        **dict(config.get("options") or {}),
    )


def count_parameters(model: SegmentationModel) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
