"""Model bundles as ONNX models: for QGIS Deepness and for fast inference with ONNX Runtime.

Two graphs are exported from the same (adapted) learner, by tracing
``learner.predict(state, x)`` with the adapted state folded in as constants
(``torch.onnx.export``, ONNX opset 17):

- the **logits graph** (:func:`onnx_bytes`): input ``x`` = *normalised* bands
  ``(N, C, H, W)`` with dynamic batch and size, output the raw logits ``(N, K, H, W)``.
  ``landcover predict --engine onnxruntime`` runs it (:class:`OrtRunner`).
- the **Deepness graph** (:func:`export_onnx`): what the QGIS plugin Deepness
  (Aszkowski et al. 2023, "Deepness: Deep neural remote sensing plugin for QGIS",
  SoftwareX 23) runs. Deepness (since 0.6.0) scales the layer's values by 1/255 and then
  standardises them with the metadata's ``standardization_mean`` / ``standardization_std``
  (``(raw / 255 - mean / 255) / (std / 255)``, i.e. the bundle's own normalisation), reads
  one square output of class probabilities and tiles the layer itself; so this graph takes
  the standardised bands, runs the network and applies the softmax, on square tiles of the
  bundle's tile size. Its metadata (``metadata_props``, JSON values, as Deepness reads
  them): ``model_type`` ``"Segmentor"``, ``class_names`` ``{id: name}``, ``resolution`` (cm
  per pixel), ``tile_size`` / ``tiles_size``, ``tiles_overlap`` (percent), ``seg_thresh``,
  ``seg_small_segment``, ``standardization_mean`` / ``standardization_std`` (per band, on the
  0..1 scale) and ``landcover`` (bands, raw mean/std, class colours, ``class_values``: the
  class file's value of each output channel, bundle kind, version).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landcover import __version__
from landcover.inference.bundle import ModelBundle, check_mappable, find_model
from landcover.inference.errors import BundleError
from landcover.meta.functional import call_with
from landcover.meta.protocol import AdaptedState
from landcover.models.upsample import constant_scale_upsampling

#: ONNX opset of the exported graphs.
OPSET = 17
#: Deepness scales every input value by 1/255 before it reaches the model.
DEEPNESS_SCALE = 255.0


class LogitsModule(nn.Module):
    """``x (normalised) -> logits`` of a learner with a fixed adapted state."""

    def __init__(self, learner: nn.Module, state: AdaptedState) -> None:
        super().__init__()
        self.learner = learner
        self.state = state

    def forward(self, x: Tensor) -> Tensor:
        """Logits of normalised ``(N, C, H, W)`` bands."""
        return self.learner.predict(self.state, x)


class DeepnessModule(nn.Module):
    """``standardised bands -> class probabilities``: the softmax in the graph.

    Deepness (>= 0.6) standardises the input itself with the metadata's statistics; a
    graph that standardised again would see the bands normalised twice.
    """

    def __init__(self, logits: LogitsModule) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, z: Tensor) -> Tensor:
        """Probabilities of ``(N, C, H, W)`` standardised bands."""
        return torch.softmax(self.logits(z), dim=1)


def _modules(bundle: ModelBundle) -> LogitsModule:
    learner = bundle.build_learner("cpu")
    state = bundle.adapted_state("cpu") if bundle.kind == "adapted" else AdaptedState()
    check_mappable(bundle, state)
    return LogitsModule(learner, state).eval()


def _swap_call(module: nn.Module, params: Any, buffers: Any, args: Any) -> Any:
    """``functional_call`` that the ONNX tracer accepts: swap tensors in, run, swap back.

    ``torch.func.functional_call`` refuses traced modules; for export (no autograd; only
    in the exporting thread, through :func:`~landcover.meta.functional.call_with`) the
    given tensors are put into the module's parameter/buffer slots for the duration of
    one forward and the module's own tensors restored afterwards. The module is the
    exporter's own copy, built from the bundle.
    """
    saved: list[tuple[dict[str, Any], str, Any]] = []
    try:
        for table, tensors in (("_parameters", params), ("_buffers", buffers)):
            for name, tensor in tensors.items():
                path, _, attr = name.rpartition(".")
                slots = getattr(module.get_submodule(path), table)
                if attr in slots:
                    saved.append((slots, attr, slots[attr]))
                    slots[attr] = tensor
        return module(*args)
    finally:
        for slots, attr, old in reversed(saved):
            slots[attr] = old


def _trace(
    module: nn.Module, example: Tensor, dynamic: dict[str, dict[int, str]], *,
    fixed_scale: bool = False,
) -> bytes:  # fmt: skip
    """Trace ``module`` to ONNX bytes; ``fixed_scale``: 2x upsamplings as constant scales.

    Both switches are context-local (:func:`landcover.meta.functional.call_with`,
    :func:`landcover.models.upsample.constant_scale_upsampling`): models running in other
    threads meanwhile (the service) are not affected.
    """
    buf = io.BytesIO()
    with ExitStack() as stack:
        stack.enter_context(call_with(_swap_call))
        if fixed_scale:
            stack.enter_context(constant_scale_upsampling())
        return _export(module, example, dynamic, buf)


def _export(
    module: nn.Module, example: Tensor, dynamic: dict[str, dict[int, str]], buf: io.BytesIO
) -> bytes:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer / deprecation chatter, not for the user
        try:
            torch.onnx.export(
                module, (example,), buf, input_names=["x"], output_names=["y"],
                dynamic_axes=dynamic, opset_version=OPSET, dynamo=False,
            )  # fmt: skip
        except Exception as err:  # the tracer raises many types; say what to do
            raise BundleError(
                f"this bundle's learner cannot be exported to ONNX ({type(err).__name__}: "
                f"{err}); export works for learners that predict with the network's forward "
                "pass (MAML family, ANIL, Meta-SGD, baselines); use --engine torch"
            ) from None
    return buf.getvalue()


def onnx_bytes(bundle: ModelBundle, window: int = 256) -> bytes:
    """The logits graph of a bundle (dynamic batch, height and width) as bytes.

    Its height and width must be multiples of the network's size divisor (the predictor
    pads windows to them): upsamplings are exported with a constant scale of 2.
    """
    module = _modules(bundle)
    example = torch.zeros(1, bundle.num_bands, window, window)
    axes = {"x": {0: "batch", 2: "height", 3: "width"}, "y": {0: "batch", 2: "height", 3: "width"}}
    data = _trace(module, example, axes, fixed_scale=True)
    _check_same(module, ort_session(data, 1), bundle.num_bands)
    return data


def _check_same(
    module: nn.Module, session: Any, bands: int, size: int = 64, tol: float = 1e-3
) -> None:
    """Refuse graphs whose output differs from torch's.

    Seen with untrained transductive-BatchNorm models: the exporter merges their identical
    BatchNorm tensors (weights 1 = running variances 1, biases 0 = running means 0) and
    ONNX Runtime's training-mode BatchNormalization then updates them in place; trained
    ones export and reproduce torch.
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, bands, size, size, generator=gen)
    x[1] *= 3.0  # a batch whose two windows differ: batch statistics would show
    with torch.no_grad():
        ref = module(x).numpy()
    got = session.run(None, {"x": x.numpy()})[0]
    if ref.shape != got.shape or not np.allclose(got, ref, atol=tol, rtol=tol):
        diff = float(np.abs(got - ref).max()) if ref.shape == got.shape else float("inf")
        raise BundleError(
            f"the ONNX graph does not reproduce this bundle's predictions (max difference "
            f"{diff:.3g}; e.g. an untrained model with transductive BatchNorm); use "
            "--engine torch (trained models and those with per-step or no BatchNorm export)"
        )


def _refuse_batch_statistics(module: nn.Module, bands: int, model: nn.Module) -> None:
    """Refuse a network whose output for a tile depends on the other tiles of its batch.

    A learner with transductive BatchNorm normalises with the batch's statistics: in
    Deepness every batch of tiles would be normalised by itself and the map would depend
    on the tiles (``landcover predict`` gives such models one statistic per raster,
    :mod:`landcover.inference.raster_norm`, which a graph of fixed tiles cannot).
    """
    s = 2 * int(model.size_divisor)
    x = torch.randn(2, bands, s, s, generator=torch.Generator().manual_seed(0))
    x[1] *= 3.0
    try:
        with torch.no_grad():
            both, one = module(x)[:1], module(x[:1])
    except Exception:  # a learner that cannot predict: the export says why (_export)
        return
    if not torch.allclose(both, one, rtol=1e-4, atol=1e-4):
        raise BundleError(
            "this model normalises with the statistics of the batch at hand (transductive "
            "BatchNorm): in Deepness each batch of tiles would be normalised by itself and "
            "the map would change with the tiles; map it with `landcover predict` (one "
            "statistic for the whole raster), or train with bn: per_step or norm: group to "
            "export it"
        )


def deepness_metadata(
    bundle: ModelBundle,
    *,
    pixel_size_m: float | None,
    tile_size: int,
    overlap_percent: int,
    seg_thresh: float = 0.0,
    small_segment: int = 0,
) -> dict[str, str]:
    """The ``metadata_props`` of the Deepness graph (every value JSON-encoded).

    ``seg_thresh``: Deepness sets every class probability below it to 0 *before* the
    argmax, so a pixel whose highest probability is below it becomes class 0. The graph
    ends in a softmax over ``K`` classes, whose highest probability is at least ``1 / K``:
    a threshold of at most ``1 / K`` never changes the argmax (the default 0 turns it
    off); a higher one is refused.

    Raises:
        ValueError: ``seg_thresh`` outside ``[0, 1 / K]``.
    """
    k = len(bundle.class_names)
    if not 0.0 <= seg_thresh <= 1.0 / k:
        raise ValueError(
            f"seg_thresh must be between 0 and 1/{k} (the least top probability of a "
            f"softmax over {k} classes); got {seg_thresh}: Deepness would turn pixels "
            "whose top probability is below it into class 0"
        )
    meta: dict[str, Any] = {
        "model_type": "Segmentor",
        "class_names": {str(i): n for i, n in enumerate(bundle.class_names)},
        "tile_size": int(tile_size),
        "tiles_size": int(tile_size),
        "tiles_overlap": int(overlap_percent),
        "seg_thresh": float(seg_thresh),
        "seg_small_segment": int(small_segment),
        "standardization_mean": [m / DEEPNESS_SCALE for m in bundle.mean],
        "standardization_std": [s / DEEPNESS_SCALE for s in bundle.std],
        "landcover": {
            "version": __version__,
            "kind": bundle.kind,
            "bands": bundle.bands,
            "mean": bundle.mean,
            "std": bundle.std,
            "classes": bundle.classes["classes"],
            # output channel -> the class file's value (a map in the user's values)
            "class_values": {str(i): v for i, v in enumerate(bundle.scheme().raw_values())},
            "input": "raw band values / 255, standardised with standardization_mean / "
            "standardization_std (Deepness >= 0.6 does both); the softmax is in the graph",
            "output": "class probabilities (N, K, H, W)",
        },
    }
    if pixel_size_m is not None:
        meta["resolution"] = float(pixel_size_m) * 100.0  # cm per pixel
    return {k: json.dumps(v) for k, v in meta.items()}


def export_onnx(
    bundle: ModelBundle,
    out: str | Path,
    *,
    pixel_size_m: float | None = None,
    tile_size: int | None = None,
    overlap_percent: int = 25,
    seg_small_segment: int = 0,
) -> Path:
    """Write a bundle as a Deepness-ready ONNX model (atomically).

    Args:
        bundle: A base (meta) or adapted bundle.
        out: Output ``.onnx`` path.
        pixel_size_m: Ground size of a pixel in metres (Deepness' ``resolution``, in cm);
            default ``bundle.info["pixel_size_m"]`` when recorded, else omitted.
        tile_size: Square tile size of the graph (default: ``landcover predict``'s window,
            :func:`~landcover.inference.default_window.default_window`: the bundle's tile size, at
            least 256 px of the network's, i.e. ``256 * stride``).
        overlap_percent: Deepness' tile overlap in percent (default 25, like ``predict``).
        seg_small_segment: Deepness' small-segment removal (pixels, 0 = off).

    Returns:
        ``out``.
    """
    import onnx

    from landcover.inference.default_window import default_window

    if not 0 <= overlap_percent < 100:
        raise ValueError(f"overlap must be 0..99 percent; got {overlap_percent}")
    tile = int(tile_size or default_window(bundle))
    if tile < 16:
        raise ValueError(f"tile size must be at least 16 px; got {tile}")
    if pixel_size_m is None and bundle.info.get("pixel_size_m") is not None:
        pixel_size_m = float(bundle.info["pixel_size_m"])
    module = DeepnessModule(_modules(bundle)).eval()
    _refuse_batch_statistics(module, bundle.num_bands, find_model(module.logits.learner))
    example = torch.zeros(1, bundle.num_bands, tile, tile)
    data = _trace(module, example, {"x": {0: "batch"}, "y": {0: "batch"}})
    model = onnx.load_from_string(data)
    with torch.no_grad():
        shape = tuple(module(example).shape)
    if shape != (1, len(bundle.class_names), tile, tile):
        raise BundleError(
            f"the network maps a {tile}x{tile} tile to an output of shape {shape}, not "
            f"(1, {len(bundle.class_names)}, {tile}, {tile}); Deepness needs one class map "
            "of the tile's size: choose a --tile-size that is a multiple of "
            f"{find_model(module.logits.learner).size_divisor}"
        )
    _static_shapes(model, bundle.num_bands, len(bundle.class_names), tile)
    meta = deepness_metadata(bundle, pixel_size_m=pixel_size_m, tile_size=tile,
                             overlap_percent=overlap_percent,
                             small_segment=seg_small_segment)  # fmt: skip
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    model.producer_name = "landcover"
    model.producer_version = __version__
    onnx.checker.check_model(model)
    _check_same(module, ort_session(model.SerializeToString(), 1), bundle.num_bands, tile)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(model.SerializeToString())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _static_shapes(model: Any, bands: int, classes: int, tile: int) -> None:
    """Declare the Deepness graph's input and output as ``(batch, C|K, tile, tile)``.

    The tracer leaves the output's channel and size symbolic when the network computes a
    size at run time (a stride > 1 U-Net upsamples its logits to the input's size), and
    Deepness reads the number of classes and the output size from the declared shape
    (a symbolic ``'Softmaxy_dim_1'`` crashed its map processor). Only the batch stays
    symbolic. :func:`_check_same` then runs the graph at this size, so a declaration that
    did not match what the graph computes is caught before anything is written.
    """
    for value, channels in ((model.graph.input[0], bands), (model.graph.output[0], classes)):
        dims = value.type.tensor_type.shape.dim
        if len(dims) != 4:
            raise BundleError(
                f"the exported graph's {value.name!r} has {len(dims)} dimensions, not 4 "
                "(N, C, H, W); this learner cannot be exported for Deepness"
            )
        dims[0].dim_param = "batch"
        for dim, size in zip(dims[1:], (channels, tile, tile)):
            dim.dim_value = int(size)  # clears a symbolic dim_param


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an ONNX model, each value parsed from JSON (as Deepness does)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    out: dict[str, Any] = {}
    for prop in model.metadata_props:
        try:
            out[prop.key] = json.loads(prop.value)
        except json.JSONDecodeError:
            out[prop.key] = prop.value
    return out


def ort_session(model: bytes | str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session with all graph optimisations."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.enable_cpu_mem_arena = False  # memory returns after each run: flat in raster size
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])


class OrtRunner:
    """Logits of normalised windows through ONNX Runtime (the ``onnxruntime`` engine).

    Attributes:
        precision: ``"fp32"`` or, after :meth:`use_int8` succeeded, ``"int8"``.
        int8_agreement: Agreement of the int8 and float class maps on the calibration
            windows (``None`` until :meth:`use_int8`).
    """

    def __init__(self, bundle: ModelBundle, window: int = 256, threads: int | None = None) -> None:
        self.model = onnx_bytes(bundle, window)
        self.threads = threads
        self.session = ort_session(self.model, threads)
        self.precision = "fp32"
        self.int8_agreement: float | None = None

    def use_int8(self, windows: np.ndarray) -> bool:
        """Switch to the int8 graph calibrated on ``windows`` if its maps agree.

        See :mod:`landcover.inference.quantize`; returns whether it switched.
        """
        from landcover.inference.quantize import MIN_AGREEMENT, agreement, quantize

        session = ort_session(quantize(self.model, windows), self.threads)
        self.int8_agreement = agreement(self.session, session, windows)
        if self.int8_agreement >= MIN_AGREEMENT:
            self.session, self.precision = session, "int8"
        return self.precision == "int8"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``(N, K, H, W)`` float32 logits of ``(N, C, H, W)`` normalised float32 bands."""
        return self.session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]
