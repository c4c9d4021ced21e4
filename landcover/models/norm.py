"""Normalisation-layer policy of the segmentation models.

Meta-learning is picky about normalisation (Antoniou et al. 2019, "How to train your
MAML", section 4): BatchNorm running statistics shared across tasks leak information
between them, which is why MAML++ keeps per-step statistics and why GroupNorm (Wu & He
2018, "Group Normalization") — which has no running statistics at all — is a safe choice
for few-shot segmentation. The model factory builds every network with one of three
norms, chosen by name:

* ``"batch"``: :class:`torch.nn.BatchNorm2d` (the core's BN policy decides how its
  statistics are used: per step, transductive, ...);
* ``"group"``: :class:`torch.nn.GroupNorm` with at most ``groups`` groups;
* ``"none"``: no normalisation (:class:`torch.nn.Identity`);
* ``"layer"``: LayerNorm over the channels of each pixel (Ba et al. 2016; timm's
  ``LayerNorm2d``, as in ConvNeXt). GroupNorm normalises each sample over its whole spatial
  extent, so its output depends on the window a raster is cut into (a map computed window
  by window differs from the map of the whole raster, and seams show); a per-pixel
  LayerNorm depends on nothing but the pixel's own features, yet keeps activations at a
  fixed scale, which a few-shot inner loop needs.

:func:`convert_norm` rewrites an existing network (an smp encoder, say) in place so that
its BatchNorm layers follow the chosen policy, copying the affine parameters.
"""

from __future__ import annotations

import math

from torch import nn

#: Valid values of the ``norm`` option.
NORMS: tuple[str, ...] = ("batch", "group", "none", "layer")

#: Default maximum number of GroupNorm groups.
DEFAULT_GROUPS = 8


def pixel_layer_norm(channels: int) -> nn.Module:
    """LayerNorm over the channels of every pixel of ``(N, C, H, W)`` maps."""
    from timm.layers import LayerNorm2d

    return LayerNorm2d(channels)


def check_norm(norm: str) -> str:
    """Return ``norm`` if it names a known policy.

    Raises:
        ValueError: ``norm`` is not one of :data:`NORMS`.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {list(NORMS)}")
    return norm


def group_count(channels: int, groups: int = DEFAULT_GROUPS) -> int:
    """Largest number of groups ``<= groups`` that divides ``channels``."""
    if channels < 1 or groups < 1:
        raise ValueError(f"channels and groups must be positive; got {channels}, {groups}")
    g = math.gcd(channels, groups)
    return max(g, 1)


def make_norm(norm: str, channels: int, groups: int = DEFAULT_GROUPS) -> nn.Module:
    """Build one normalisation layer for ``channels`` feature maps.

    Args:
        norm: One of :data:`NORMS`.
        channels: Number of channels it normalises.
        groups: Maximum number of GroupNorm groups (``"group"`` only).

    Returns:
        The layer (``nn.Identity`` for ``"none"``).
    """
    check_norm(norm)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(group_count(channels, groups), channels)
    if norm == "layer":
        return pixel_layer_norm(channels)
    return nn.Identity()


def convert_norm(module: nn.Module, norm: str, groups: int = DEFAULT_GROUPS) -> nn.Module:
    """Replace every ``BatchNorm2d`` of ``module`` according to ``norm``, in place.

    GroupNorm layers take the BatchNorm's affine weight and bias (so a converted network
    starts from the same affine transform); ``"none"`` drops the layer. ``"batch"`` leaves
    the network unchanged.

    Args:
        module: The network to rewrite.
        norm: One of :data:`NORMS`.
        groups: Maximum number of GroupNorm groups.

    Returns:
        ``module`` itself (or the replacement, when ``module`` is a BatchNorm itself).
    """
    check_norm(norm)
    if norm == "batch":
        return module
    if isinstance(module, nn.BatchNorm2d):
        return _replacement(module, norm, groups)
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, _replacement(child, norm, groups))
        else:
            convert_norm(child, norm, groups)
    return module


def _replacement(bn: nn.BatchNorm2d, norm: str, groups: int) -> nn.Module:
    if norm == "none":
        return nn.Identity()
    if norm == "layer":
        layer = pixel_layer_norm(bn.num_features)
        if bn.affine:
            layer.weight.data.copy_(bn.weight.data)
            layer.bias.data.copy_(bn.bias.data)
        return layer
    gn = nn.GroupNorm(group_count(bn.num_features, groups), bn.num_features, eps=bn.eps)
    if bn.affine:
        gn.weight.data.copy_(bn.weight.data)
        gn.bias.data.copy_(bn.bias.data)
    return gn


def replace_group_norms(module: nn.Module, norm: str) -> nn.Module:
    """Replace every ``GroupNorm`` of ``module`` by ``norm``'s layer (``"group"``: keep), in place.

    For decoders that build GroupNorm themselves (smp's FPN decoder).
    """
    check_norm(norm)
    if norm == "group":
        return module
    if norm == "batch":
        raise ValueError("a GroupNorm decoder cannot take norm 'batch'; use group, layer or none")
    for name, child in list(module.named_children()):
        if isinstance(child, nn.GroupNorm):
            setattr(module, name, pixel_layer_norm(child.num_channels) if norm == "layer"
                    else nn.Identity())  # fmt: skip
        else:
            replace_group_norms(child, norm)
    return module


def count_norms(module: nn.Module) -> dict[str, int]:
    """Count the normalisation layers of ``module`` by kind (for tests and reports)."""
    counts = {"batch": 0, "group": 0}
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            counts["batch"] += 1
        elif isinstance(m, nn.GroupNorm):
            counts["group"] += 1
    return counts
