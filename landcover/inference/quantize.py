"""Int8 inference where it holds: static quantisation calibrated on the raster itself.

``landcover predict --engine onnxruntime --precision int8`` quantises the logits graph
(:func:`landcover.inference.onnx_export.onnx_bytes`) with ONNX Runtime's static
post-training quantisation (Jacob et al. 2018, "Quantization and Training of Neural
Networks for Efficient Integer-Arithmetic-Only Inference", CVPR): int8 weights per output
channel, uint8 activations whose ranges are calibrated (min/max) on windows of the raster
being predicted; the convolutions then run as integer kernels (AVX-512 VNNI / AVX2).

Accuracy is checked, not assumed: the int8 graph's class maps on the calibration windows
must agree with the float graph's on at least :data:`MIN_AGREEMENT` of the pixels,
otherwise the float graph is used (and the reason reported).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

#: Least pixel agreement of int8 with float32 class maps on the calibration windows.
MIN_AGREEMENT = 0.999


class _Reader:
    """Calibration batches for :func:`onnxruntime.quantization.quantize_static`."""

    def __init__(self, windows: np.ndarray, batch: int = 2) -> None:
        self.items = [{"x": windows[i : i + batch]} for i in range(0, len(windows), batch)]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return self.items.pop() if self.items else None

    def rewind(self) -> None:  # pragma: no cover - not used by min/max calibration
        pass


def quantize(model: bytes, windows: np.ndarray) -> bytes:
    """Int8 (QOperator, per-channel) version of a float ONNX graph, calibrated on ``windows``.

    Args:
        model: The float graph (input ``x``: normalised ``(N, C, H, W)``).
        windows: Normalised calibration windows ``(N, C, h, w)`` (finite values).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(_Reader, CalibrationDataReader):
        pass

    quiet = logging.getLogger()  # the quantiser logs every skipped integer tensor
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return _quantize(model, windows, Reader, quantize_static, quant_pre_process,
                         QuantFormat, QuantType)  # fmt: skip
    finally:
        quiet.setLevel(level)


def _quantize(model: bytes, windows: np.ndarray, reader: Any, quantize_static: Any,
              pre: Any, fmt: Any, qtype: Any) -> bytes:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="landcover-int8-") as tmp:
        d = Path(tmp)
        (d / "f32.onnx").write_bytes(model)
        pre(str(d / "f32.onnx"), str(d / "pre.onnx"), skip_symbolic_shape=True)
        quantize_static(
            str(d / "pre.onnx"), str(d / "int8.onnx"), reader(windows.astype(np.float32)),
            quant_format=fmt.QOperator, per_channel=True,
            activation_type=qtype.QUInt8, weight_type=qtype.QInt8,
        )  # fmt: skip
        return (d / "int8.onnx").read_bytes()


def agreement(float_session: Any, int8_session: Any, windows: np.ndarray) -> float:
    """Pixel agreement of the two graphs' class maps (argmax of the logits)."""
    same = total = 0
    for i in range(0, len(windows), 2):
        x = np.ascontiguousarray(windows[i : i + 2], dtype=np.float32)
        a = float_session.run(None, {"x": x})[0].argmax(1)
        b = int8_session.run(None, {"x": x})[0].argmax(1)
        same += int((a == b).sum())
        total += a.size
    return same / max(total, 1)


def calibration_windows(
    src: str | Path, normalize: Any, size: int = 256, count: int = 8, seed: int = 0,
    expected: int | None = None,
) -> np.ndarray:  # fmt: skip
    """``count`` normalised ``size``² windows spread over a raster (nodata set to 0).

    Nodata pixels (:func:`~landcover.geo.raster.band_validity`) are 0 after normalisation,
    as in prediction, so a finite nodata value never calibrates the int8 ranges.

    Args:
        src: The raster to be predicted.
        normalize: ``(C, h, w) float32 -> normalised`` (the bundle's statistics).
        size: Window size (clipped to the raster).
        count: Number of windows.
        seed: Seed of the window positions.
        expected: The model's band count (an alpha band beyond it is left out).
    """
    import rasterio
    from rasterio.windows import Window

    from landcover.geo.raster import band_validity, data_bands

    rng = np.random.default_rng(seed)
    out = []
    with rasterio.open(src) as ds:
        bands = data_bands(ds, expected) if expected else list(ds.indexes)
        h, w = min(size, ds.height), min(size, ds.width)
        h, w = h - h % 8 or h, w - w % 8 or w
        for _ in range(count):
            y = int(rng.integers(0, ds.height - h + 1))
            x = int(rng.integers(0, ds.width - w + 1))
            win = Window(x, y, w, h)
            data = ds.read(bands, window=win)
            valid = band_validity(ds, bands, data, win)
            data = np.where(valid, data.astype(np.float32), np.float32(np.nan))
            out.append(np.nan_to_num(normalize(data), nan=0.0, posinf=0.0, neginf=0.0))
    return np.stack(out).astype(np.float32)
