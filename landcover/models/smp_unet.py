"""segmentation-models-pytorch U-Nets with any smp encoder, as ``body`` + ``head``.

The U-Net (Ronneberger et al. 2015) of segmentation-models-pytorch (Iakubovskii 2019)
with three changes for meta-learning:

* ``encoder_weights`` is ``None`` (a random initialisation) or ``"imagenet"`` for the
  encoders whose ImageNet weights ship inside a pip package (never a download; see
  :mod:`landcover.models.pretrained`); ``freeze_encoder`` holds a pretrained encoder fixed
  (:class:`~landcover.models.frozen_encoder.FrozenEncoder`: no parameters, no batch
  statistics, standardised bands mapped onto the weights' input distribution in the graph);
* ``decoder`` is smp's U-Net decoder (``"unet"``, full resolution) or its FPN decoder
  (``"fpn"``, Kirillov et al. 2019 "Panoptic Feature Pyramid Networks": a feature pyramid
  merged at 1/4 of the input, GroupNorm only, logits upsampled bilinearly), which costs a
  fraction of the U-Net decoder on a CPU and never depends on the batch;
* encoder stages beyond ``encoder_depth`` are *dropped*: smp builds the full encoder and
  only skips the deep stages in ``forward``, which leaves parameters that no loss
  reaches, so ``torch.autograd.grad`` over all parameters (what MAML's inner loop takes)
  would fail. We find those stages with one gradient computation and replace them by a
  parameter-free pass-through (:func:`drop_unused_modules`);
* the 3x3 segmentation head is replaced by a 1x1 ``classifier`` so that the decoder's
  output is the per-pixel embedding prototype learners pool.

In-place ReLUs are made out-of-place so that ``torch.func`` transforms (``vmap``, ``grad``)
work on the whole network.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from landcover.models.norm import DEFAULT_GROUPS, check_norm, convert_norm, replace_group_norms
from landcover.models.segmentation import SegmentationHead, SegmentationModel

#: Options of ``build_model("smp:<encoder>", ...)`` and their defaults (``None`` ones
#: are derived from the others).
SMP_DEFAULTS: dict[str, Any] = {
    "encoder_depth": 4,
    "decoder_channels": None,
    "norm": "batch",
    "groups": DEFAULT_GROUPS,
    "decoder_attention_type": None,
    "encoder_weights": None,
    "freeze_encoder": False,
    "rgb_bands": [0, 1, 2],
    "decoder": "unet",
    "pyramid_channels": 64,
    "segmentation_channels": 32,
    "spectral_channels": 0,
}

#: Decoders of :func:`build_smp_unet`.
DECODERS: tuple[str, ...] = ("unet", "fpn")


class SmpEncoder(nn.Module):
    """An smp encoder: ``x -> [f0 (= x), f1, ..., f_depth]``."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps from fine to coarse (the first is the input itself)."""
        return list(self.encoder(x))


def encoder_names() -> list[str]:
    """Names of the smp encoders (``tu-<timm name>`` encoders are accepted too)."""
    import segmentation_models_pytorch as smp

    return sorted(smp.encoders.get_encoder_names())


class Dropped(nn.Module):
    """Stands in for a dropped stage: returns its first input, holds no parameters."""

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        """Return ``x`` unchanged."""
        return x


def drop_unused_modules(module: nn.Module, example: torch.Tensor) -> list[str]:
    """Replace every submodule whose parameters cannot affect the output by :class:`Dropped`.

    smp encoders skip their deep stages in ``forward`` or compute them and discard the
    result; either way no gradient reaches those parameters. We find them with one
    ``torch.autograd.grad(..., allow_unused=True)`` and replace the outermost modules whose
    parameters all went without a gradient. Each replacement is checked by running the
    network again: if the output changes or the forward pass fails, the module is
    restored and its children are tried instead. Modules are tried from the last to the
    first, so a late stage is gone before the stage that feeds it is tried.

    Args:
        module: The network (rewritten in place).
        example: An input of the shape the network will see (its values do not matter).

    Returns:
        Names of the dropped submodules.
    """
    was_training = module.training
    module.eval()
    params = dict(module.named_parameters())
    reference = [f.detach() for f in module(example)]
    with torch.enable_grad():
        out = module(example)
        total = sum(f.float().mean() for f in out if f.requires_grad)
        grads = torch.autograd.grad(total, list(params.values()), allow_unused=True)
    unused = {id(p) for p, g in zip(params.values(), grads) if g is None}

    def same_output() -> bool:
        try:
            with torch.no_grad():
                now = module(example)
        except Exception:
            return False
        return len(now) == len(reference) and all(
            a.shape == b.shape and torch.equal(a, b) for a, b in zip(now, reference)
        )

    dropped: list[str] = []
    # Last modules first: dropping a late stage first lets an earlier one go as well.
    pending = list(module.named_children())
    while pending:
        name, child = pending.pop()
        own = list(child.parameters())
        if not own or not any(id(p) in unused for p in own):
            continue
        if not all(id(p) in unused for p in own):
            pending += [(f"{name}.{n}", c) for n, c in child.named_children()]
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, Dropped())
        if same_output():
            dropped.append(name)
        else:
            setattr(parent, attr, child)
            pending += [(f"{name}.{n}", c) for n, c in child.named_children()]
    module.train(was_training)
    return dropped


def build_smp_unet(
    encoder_name: str, in_channels: int, num_classes: int, **options: Any
) -> SegmentationModel:
    """Build an smp U-Net with the given encoder.

    Args:
        encoder_name: An smp encoder name (``"resnet18"``, ``"efficientnet-b0"``,
            ``"tu-<timm model>"``, ...).
        in_channels: Input bands.
        num_classes: Output classes.
        **options: ``encoder_depth`` (3-5, default 4), ``decoder_channels`` (one per
            stage, default ``16 * 2**k`` from deep to shallow), ``norm`` (``"batch"``,
            ``"group"``, ``"none"``), ``groups``, ``decoder_attention_type``
            (``None`` or ``"scse"``), ``encoder_weights`` (``None`` or ``"imagenet"``),
            ``freeze_encoder``, ``rgb_bands``, ``decoder`` (``"unet"`` or ``"fpn"``),
            ``pyramid_channels`` and ``segmentation_channels`` (FPN), ``spectral_channels``
            (``K > 0``: a per-pixel path of the input bands beside the decoder, see
            :mod:`landcover.models.spectral_skip`; 0, the default, none).

    Returns:
        A :class:`SegmentationModel`.

    Raises:
        ValueError: Unknown option, invalid value, or pretrained weights requested.
        KeyError: Unknown encoder name (the message lists the valid ones).
    """
    import segmentation_models_pytorch as smp

    unknown = sorted(set(options) - set(SMP_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown smp option(s) {unknown}; valid: {sorted(SMP_DEFAULTS)}")
    opts = {**SMP_DEFAULTS, **options}
    weights = opts["encoder_weights"]
    if weights not in (None, "imagenet"):
        raise ValueError(
            f"encoder_weights must be null or 'imagenet'; got {weights!r} (landcover never "
            "downloads weights: 'imagenet' loads them from an installed pip package)"
        )
    if opts["decoder"] not in DECODERS:
        raise ValueError(f"decoder must be one of {list(DECODERS)}; got {opts['decoder']!r}")
    norm = check_norm(str(opts["norm"]))
    if (opts["decoder"], norm) in (("unet", "layer"), ("fpn", "batch")):
        raise ValueError(
            f"norm {norm!r} does not fit the {opts['decoder']} decoder: the U-Net takes batch, "
            "group or none; the FPN decoder takes group, layer (the window-independent choice) "
            "or none"
        )
    if opts["freeze_encoder"] and weights is None:
        raise ValueError(
            "freeze_encoder: true needs encoder_weights: imagenet (a frozen random encoder "
            "learns nothing)"
        )
    if not encoder_name.startswith("tu-") and encoder_name not in encoder_names():
        raise KeyError(f"unknown smp encoder {encoder_name!r}; valid: {encoder_names()}")
    depth = int(opts["encoder_depth"])
    if not 3 <= depth <= 5:
        raise ValueError(f"encoder_depth must be 3, 4 or 5; got {depth}")
    channels = opts["decoder_channels"]
    if channels is None:
        channels = [16 * 2**k for k in range(depth - 1, -1, -1)]
    channels = [int(c) for c in channels]
    if len(channels) != depth:
        raise ValueError(
            f"decoder_channels needs one entry per encoder stage ({depth}); got {channels}"
        )
    norm = check_norm(str(opts["norm"]))
    groups = int(opts["groups"])
    opts.update(encoder_depth=depth, decoder_channels=channels, norm=norm, groups=groups)

    if opts["decoder"] == "fpn":
        depth = 5
        seg = int(opts["segmentation_channels"])
        if seg % 32 or int(opts["pyramid_channels"]) < 1:
            raise ValueError(
                "the FPN decoder's GroupNorm has 32 groups: segmentation_channels must be a "
                f"multiple of 32 and pyramid_channels >= 1; got {seg}, {opts['pyramid_channels']}"
            )
        net = smp.FPN(
            encoder_name=encoder_name, encoder_depth=5, encoder_weights=None,
            decoder_pyramid_channels=int(opts["pyramid_channels"]),
            decoder_segmentation_channels=seg, decoder_dropout=0.0,
            in_channels=in_channels, classes=num_classes,
        )  # fmt: skip
        channels, stride, levels = [seg], 4, [2, 3, 4, 5]
        opts.update(encoder_depth=5, decoder_channels=None)
    else:
        net = smp.Unet(
            encoder_name=encoder_name,
            encoder_depth=depth,
            encoder_weights=None,
            decoder_use_norm="batchnorm" if norm != "none" else False,
            decoder_channels=channels,
            decoder_attention_type=opts["decoder_attention_type"],
            in_channels=in_channels,
            classes=num_classes,
        )
        stride, levels = 1, None
    if weights == "imagenet":
        from landcover.models.pretrained import load_imagenet_weights

        load_imagenet_weights(
            getattr(net.encoder, "model", net.encoder), encoder_name, in_channels,
            opts["rgb_bands"],
        )  # fmt: skip
    example = torch.zeros(2, in_channels, 2**depth * 2, 2**depth * 2)
    if opts["freeze_encoder"]:
        from landcover.models.frozen_encoder import FrozenEncoder
        from landcover.models.pretrained import input_affine

        drop_unused_modules(SmpEncoder(net.encoder), example)
        body: nn.Module = FrozenEncoder(
            net.encoder, *input_affine(in_channels, opts["rgb_bands"]), levels=levels
        )
    else:
        body = SmpEncoder(net.encoder)
        drop_unused_modules(body, example)
        convert_norm(body, norm, groups)
    if opts["decoder"] == "fpn":
        decoder = replace_group_norms(net.decoder, norm)
    else:
        decoder = convert_norm(net.decoder, norm, groups)
    embedding = channels[-1]
    spectral = int(opts["spectral_channels"])
    if spectral < 0:
        raise ValueError(f"spectral_channels must be >= 0 (0: none); got {spectral}")
    if spectral:
        from landcover.models.spectral_skip import SpectralSkip

        decoder = SpectralSkip(decoder, in_channels, spectral, embedding)
        embedding, stride = decoder.out_channels, 1
    opts.update(spectral_channels=spectral)
    for m in [*body.modules(), *decoder.modules()]:
        if isinstance(m, nn.ReLU | nn.ReLU6 | nn.SiLU | nn.LeakyReLU) and m.inplace:
            m.inplace = False
    return SegmentationModel(
        f"smp:{encoder_name}",
        body,
        SegmentationHead(decoder, embedding, num_classes, stride=stride),
        in_channels=in_channels,
        num_classes=num_classes,
        size_divisor=2**depth,
        options=opts,
    )
