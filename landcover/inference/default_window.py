"""The default sliding window of a bundle (what ``predict``, the service and ONNX use)."""

from __future__ import annotations

from landcover.inference.bundle import ModelBundle

#: Least default window of models on a frozen pretrained encoder: its deepest features see
#: hundreds of pixels, so a window's border changes them; 1024-px windows (overlap 256) agree
#: with one whole-raster window on >= 0.998 of the pixels of real aerial tiles, 512-px ones on
#: 0.98 and 256-px ones on 0.93 (docs/inference.md).
PRETRAINED_WINDOW = 1024


def default_window(bundle: ModelBundle) -> int:
    """Default window size: the training tile size, at least 256 px of the network's.

    A network run at ``stride`` s (:mod:`landcover.models.small_unet`) sees a window of
    ``w`` px as ``w / s`` px; with 256 / s px, the zero padding at the window's borders
    and the pooling grid reach far into the blending overlap and the map changes with
    the windows (256-px windows of a stride-4 model agreed with one whole-raster window
    on 0.989 of a real aerial tile's pixels, 1024-px windows on > 0.999: ``landcover bench
    predict``). So the default is ``256 * s`` px, the cost of a 256-px window at stride 1.
    A frozen pretrained encoder's deepest features see hundreds of pixels:
    :data:`PRETRAINED_WINDOW` at least.
    """
    options = (bundle.model or {}).get("options") or {}
    stride = int(options.get("stride", 1) or 1)
    least = PRETRAINED_WINDOW if options.get("encoder_weights") else 256 * stride
    return max(int(bundle.tile_size), least)
