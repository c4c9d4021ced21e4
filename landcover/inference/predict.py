"""Sliding-window segmentation of rasters of any size with an (adapted) bundle.

:class:`Predictor` turns raw image windows into class probabilities (normalisation with
the bundle's statistics, padding to the network's size divisor, the learner's
``predict`` with the adapted state, softmax). :func:`predict_array` segments an in-memory
image; :func:`predict_raster` (:mod:`landcover.inference.predict_raster`) streams a
raster on disk through the same overlapping, smoothly blended windows
(:mod:`landcover.inference.sliding`). Pixels where any band is NaN or infinite are
nodata, whether or not the raster declares a nodata value; nodata pixels (declared or
not) enter the network as the band means (0 after normalisation), so a map does not
depend on which value a raster uses for nodata.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from landcover.inference.bundle import ModelBundle, check_mappable, find_model
from landcover.inference.default_window import default_window
from landcover.inference.errors import BundleError
from landcover.inference.raster_norm import BATCH, NormStatistics, grid_windows
from landcover.inference.sliding import StripBlender, WindowPlan, pad_to
from landcover.meta.protocol import AdaptedState

#: Class-map value of pixels where the input has no data.
NODATA_CLASS = 255


#: Engines that run the network.
ENGINES = ("torch", "onnxruntime")


class Predictor:
    """Raw image windows -> class probabilities, for one (adapted) bundle.

    A meta bundle predicts with its meta-learned weights (meaningful for the pretrained
    baseline; for meta-learners adapt first). Build with :meth:`from_bundle`.

    Engines: ``"torch"`` runs the learner's ``predict`` (the reference);
    ``"onnxruntime"`` runs the same network exported to ONNX with the adapted state folded
    in (:mod:`landcover.inference.onnx_export`), with ONNX Runtime's graph optimisations
    (BatchNorm folded into the convolutions, fused activations).

    ``workers``: windows computed at once by the sliding-window paths. The onnxruntime
    engine computes one window per thread (``threads`` workers, each single-threaded:
    no synchronisation inside a window, no spinning threads competing with the reader
    and writer); torch one window at a time with ``threads`` intra-op threads.

    Thread-safe: ``torch.func.functional_call`` swaps tensors into the module while it
    runs, so concurrent forwards through one predictor (the service caches predictors)
    are serialised by a lock.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        learner: Any,
        state: AdaptedState,
        device: torch.device,
        engine: str = "torch",
        threads: int | None = None,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {list(ENGINES)}; got {engine!r}")
        check_mappable(bundle, state)
        self.bundle = bundle
        self.learner = learner
        self.state = state
        self.device = device
        self.engine = engine
        self.size_divisor = int(find_model(learner).size_divisor)
        self.num_classes = len(bundle.class_names)
        self._lock = threading.Lock()
        self._ort: Any = None
        self.workers = 1
        if engine == "onnxruntime":
            from landcover.inference.onnx_export import OrtRunner

            if device.type != "cpu":
                raise ValueError("the onnxruntime engine runs on the CPU; use --device cpu")
            self.workers = max(1, int(threads or torch.get_num_threads()))
            self._ort = OrtRunner(bundle, threads=1 if self.workers > 1 else None)
        self.per_window = self._depends_on_batch()
        # Normalisation over each window's own pixels: the map depends on the window size.
        per_sample = (torch.nn.GroupNorm, torch.nn.modules.instancenorm._InstanceNorm)
        self.window_dependent = self.per_window or any(
            isinstance(m, per_sample) for m in find_model(learner).modules()
        )
        if self.per_window and engine == "onnxruntime":
            raise BundleError(
                "this model normalises with the statistics of the batch at hand "
                "(transductive BatchNorm), so its map would depend on the windows; the "
                "onnxruntime engine cannot give it one statistic for the whole raster: use "
                "--engine torch, which does"
            )
        #: One BatchNorm statistic per raster (:meth:`one_statistic`) for learners that
        #: normalise with the batch's statistics.
        self.norm_stats = NormStatistics(find_model(learner), BATCH) if self.per_window else None
        self._raster_lock = threading.RLock()

    def _depends_on_batch(self) -> bool:
        """Whether a window's output changes with the other windows of its batch.

        Learners with transductive BatchNorm normalise with the statistics of the batch at
        hand; such windows are computed one at a time, so that the map does not depend on
        ``batch_size`` and both engines compute the same windows the same way.
        """
        s = 2 * self.size_divisor
        x = torch.randn(2, self.bundle.num_bands, s, s, generator=torch.Generator().manual_seed(0))
        x[1] *= 3.0
        try:
            with self._lock, torch.no_grad():
                both = self.learner.predict(self.state, x.to(self.device)).float().cpu()
                one = self.learner.predict(self.state, x[:1].to(self.device)).float().cpu()
        except Exception:  # e.g. an unadapted prototype learner; logits() then says why
            return False
        return not torch.allclose(both[:1], one, rtol=1e-4, atol=1e-4)

    @classmethod
    def from_bundle(
        cls,
        bundle: ModelBundle,
        device: str | torch.device = "cpu",
        engine: str = "torch",
        threads: int | None = None,
    ) -> Predictor:
        """Load the learner and the adapted state (an empty state for meta bundles).

        ``threads``: CPU threads of the onnxruntime engine (default: torch's).
        """
        device = torch.device(device)
        learner = bundle.build_learner(device)
        state = bundle.adapted_state(device) if bundle.kind == "adapted" else AdaptedState()
        return cls(bundle, learner, state, device, engine, threads)

    def use_int8(self, src: str | Path) -> str:
        """Quantise the ONNX graph to int8, calibrated on windows of raster ``src``.

        Only for the ``onnxruntime`` engine; keeps float32 when the int8 class maps of the
        calibration windows agree with float32 on fewer than 99.9 % of the pixels.

        Returns:
            A one-line note on the outcome (precision and agreement).
        """
        if self._ort is None:
            raise ValueError("int8 needs --engine onnxruntime")
        from landcover.geo.raster import read_profile
        from landcover.inference.quantize import calibration_windows

        read_profile(src)  # a clear GeoDataError for a missing or unreadable raster

        windows = calibration_windows(
            src, lambda a: self.bundle.normalize(torch.from_numpy(a)).numpy(),
            expected=self.bundle.num_bands,
        )  # fmt: skip
        d = self.size_divisor  # the graph takes multiples of the size divisor
        h, w = windows.shape[-2] // d * d, windows.shape[-1] // d * d
        if h == 0 or w == 0:
            raise ValueError(f"the raster is too small for int8 calibration (< {d} px)")
        windows = np.ascontiguousarray(windows[..., :h, :w])
        used = self._ort.use_int8(windows)
        agree = self._ort.int8_agreement
        return (f"int8: class maps agree with float32 on {agree:.5f} of the calibration "
                f"pixels; {'using int8' if used else 'kept float32 (needs >= 0.999)'}")  # fmt: skip

    @property
    def precision(self) -> str:
        """``"fp32"`` or ``"int8"`` (onnxruntime engine after :meth:`use_int8`)."""
        return self._ort.precision if self._ort is not None else "fp32"

    def logits(self, x: Tensor) -> Tensor:
        """``(N, K, h, w)`` logits of *normalised* ``(N, C, h, w)`` windows (padded)."""
        if self.per_window and x.shape[0] > 1:
            return torch.cat([self.logits(x[i : i + 1]) for i in range(x.shape[0])])
        if self._ort is not None:
            return torch.from_numpy(self._ort(x.numpy()))
        with self._lock, torch.no_grad():
            try:
                return self.learner.predict(self.state, x.to(self.device)).float().cpu()
            except (KeyError, TypeError, AttributeError) as err:
                raise BundleError(
                    f"the learner could not predict with this bundle ({err!r}); "
                    "a meta-learned bundle must be adapted first: `landcover adapt`"
                ) from err

    def probabilities(self, x: Tensor) -> Tensor:
        """``(N, K, h, w)`` class probabilities of raw ``(N, C, h, w)`` windows.

        Non-finite values (NaN, inf) are set to 0 after normalisation; callers mark such
        pixels as nodata (:func:`finite_mask`).
        """
        h, w = x.shape[-2:]
        return torch.softmax(self.logits(self.prepare(x)), dim=1)[..., :h, :w]

    def prepare(self, x: Tensor) -> Tensor:
        """Normalised raw ``(N, C, h, w)`` windows, padded to the size divisor.

        Non-finite values (NaN, inf) are set to 0 after normalisation; padding (bottom and
        right) mirrors the window.
        """
        self.bundle.check_bands(x.shape[1])
        h, w = x.shape[-2:]
        x = self.bundle.normalize(x.float())
        x = torch.where(torch.isfinite(x), x, torch.zeros((), dtype=x.dtype))
        d = self.size_divisor
        ph, pw = (-h) % d, (-w) % d
        if h + ph == d and w + pw == d:  # one pixel per channel at the bottleneck:
            ph += d  # BatchNorm with batch statistics is undefined there
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return x

    @contextmanager
    def one_statistic(
        self, windows: Callable[[], Iterable[tuple[Tensor, Tensor]]]
    ) -> Iterator[None]:
        """Within the block, normalise every window with the statistics of one raster.

        For learners that normalise with the statistics of the batch at hand (transductive
        BatchNorm; :mod:`landcover.inference.raster_norm`): the statistics are computed over
        ``windows()`` (raw ``(C, h, w)`` bands and ``(h, w)`` bool validity, a grid over
        the raster) and used for every window until the block ends, so the map does not
        depend on the window size, overlap or batch. Rasters predicted through one
        predictor at the same time (the service's threads) wait for each other. Other
        models: nothing is computed (GroupNorm keeps normalising each window over its
        own pixels, the same whatever the batch).
        """
        if self.norm_stats is None:
            yield
            return
        with self._raster_lock:
            pairs = []
            for image, valid in windows():
                h, w = image.shape[-2:]
                x = self.prepare(image[None])
                weight = torch.zeros(1, 1, *x.shape[-2:])
                weight[0, 0, :h, :w] = valid.float()
                pairs.append((x, weight))
            try:
                self.norm_stats.gather(self.logits, pairs)
                yield
            finally:
                self.norm_stats.clear()


def finite_mask(image: Tensor | np.ndarray) -> Tensor:
    """``(H, W)`` bool: every band of the ``(C, H, W)`` image is finite (not NaN/inf)."""
    if isinstance(image, np.ndarray):
        if np.issubdtype(image.dtype, np.integer):
            return torch.ones(image.shape[-2:], dtype=torch.bool)
        return torch.from_numpy(np.isfinite(image).all(axis=0))
    if not image.is_floating_point():
        return torch.ones(image.shape[-2:], dtype=torch.bool)
    return torch.isfinite(image).all(dim=0)


@dataclass
class Prediction:
    """In-memory result of :func:`predict_array`.

    Attributes:
        probabilities: ``(K, H, W)`` blended class probabilities.
        classes: ``(H, W)`` int64 class indices, :data:`NODATA_CLASS` where invalid.
    """

    probabilities: Tensor
    classes: Tensor


def _window_batches(
    strip: Tensor | np.ndarray, valid: Tensor, plan: WindowPlan, batch_size: int
) -> Iterator[tuple[list[int], Tensor]]:
    # Windows without a single valid pixel are skipped: all their pixels become nodata.
    cols = [c for c, x in enumerate(plan.col_starts) if bool(valid[:, x : x + plan.win_w].any())]
    for i in range(0, len(cols), batch_size):
        chunk = cols[i : i + batch_size]
        parts = [strip[:, :, plan.col_starts[c] : plan.col_starts[c] + plan.win_w] for c in chunk]
        if isinstance(strip, np.ndarray):  # raw raster values: float32 per batch
            yield chunk, torch.from_numpy(np.stack(parts).astype(np.float32))
        else:
            yield chunk, torch.stack(parts)


def _ordered_map(fn: Callable[[Any], Any], items: Iterator[Any], workers: int) -> Iterator[Any]:
    """``map(fn, items)`` on ``workers`` threads, in order, at most ``2 * workers`` in flight.

    Items that are ``None`` pass through without a call (row ends). The networks release
    the GIL while they run, so windows are computed in parallel, one per core.
    """
    if workers <= 1:
        yield from (None if it is None else fn(it) for it in items)
        return
    pending: deque[Future[Any] | None] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="landcover-infer") as pool:
        try:
            for it in items:
                pending.append(None if it is None else pool.submit(fn, it))
                while len([f for f in pending if f is not None]) > 2 * workers or (
                    pending and pending[0] is None
                ):
                    f = pending.popleft()
                    yield None if f is None else f.result()
            while pending:
                f = pending.popleft()
                yield None if f is None else f.result()
        finally:
            for f in pending:
                if f is not None:
                    f.cancel()


def blend_rows(
    predictor: Predictor,
    plan: WindowPlan,
    strips: Iterator[tuple[Tensor | np.ndarray, Tensor]],
    batch_size: int,
    bar: tqdm | None = None,
    *,
    argmax: bool = False,
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Yield ``(first_row, blended, valid (n, W))`` strip by strip.

    The windows of all strips stream through :attr:`Predictor.workers` threads (ONNX
    Runtime: one window per core) and are blended in order, so the result does not depend
    on the number of threads. Blended rows are cropped to the raster (the plan's padding
    removed).

    Args:
        predictor: The bundle's predictor.
        plan: The windows.
        strips: ``(image (C, win_h, width), valid (win_h, width))`` for each row of
            windows, in the plan's padded width (:func:`~landcover.inference.sliding.pad_to`).
        batch_size: Windows per forward pass.
        bar: Progress bar advanced by windows.
        argmax: Yield ``(n, W)`` uint8 class indices instead of ``(K, n, W)``
            probabilities.
    """
    blender = StripBlender(plan, predictor.num_classes)
    valids: deque[Tensor] = deque()

    def jobs() -> Iterator[Tensor | None]:
        for strip, valid in strips:
            valids.append(valid)
            for chunk, batch in _window_batches(strip, valid, plan, batch_size):
                cols.append(chunk)
                yield batch
            cols.append(None)
            yield None  # the end of a row of windows

    cols: deque[list[int] | None] = deque()
    r = done = 0
    for probs in _ordered_map(predictor.probabilities, jobs(), predictor.workers):
        chunk = cols.popleft()
        if chunk is not None:
            for c, p in zip(chunk, probs):
                blender.add(r, c, p)
            done += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
            continue
        if bar is not None:  # windows without data count as done
            bar.update(len(plan.col_starts) - done)
        done = 0
        start, blended = blender.finish_row(r, argmax=argmax)
        valid = valids.popleft()
        n = min(blended.shape[-2], plan.raster_h - start)
        r += 1
        yield start, blended[..., :n, : plan.raster_w], valid[:n, : plan.raster_w]


def predict_array(
    predictor: Predictor,
    image: Tensor,
    *,
    valid: Tensor | None = None,
    window: int | None = None,
    overlap: int | None = None,
    batch_size: int = 4,
) -> Prediction:
    """Segment an in-memory raw ``(C, H, W)`` image with overlapping, blended windows.

    Args:
        predictor: The bundle's predictor.
        image: Raw (un-normalised) bands.
        valid: ``(H, W)`` bool, ``False`` where the image has no data (pixels with a
            non-finite band value are nodata too).
        window: Window size (default :func:`default_window`).
        overlap: Overlap of neighbouring windows (default ``window // 4``).
        batch_size: Windows per forward pass.

    Returns:
        Probabilities and class map (``NODATA_CLASS`` where ``valid`` is ``False``).
    """
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W); got {tuple(image.shape)}")
    predictor.bundle.check_bands(image.shape[0])
    h, w = image.shape[-2:]
    window = window or default_window(predictor.bundle)
    overlap = window // 4 if overlap is None else overlap
    plan = WindowPlan.make(h, w, window, overlap, predictor.size_divisor)
    ok = finite_mask(image)
    if valid is not None:
        ok &= valid.bool()
    image = image.float().masked_fill(~ok, float("nan"))  # nodata never reaches the network
    probs = torch.empty(predictor.num_classes, h, w)
    padded = torch.from_numpy(pad_to(image.numpy(), plan.height, plan.width))
    ok_p = torch.from_numpy(pad_to(ok.numpy(), plan.height, plan.width))
    strips = ((padded[:, y0 : y0 + plan.win_h], ok_p[y0 : y0 + plan.win_h])
              for y0 in plan.row_starts)  # fmt: skip

    def grid() -> Iterator[tuple[Tensor, Tensor]]:
        for y, x, rows, cols, top, bottom, left, right in grid_windows(
            h, w, predictor.size_divisor
        ):
            own = torch.zeros(rows, cols, dtype=torch.bool)  # the window's owned part
            own[top:bottom, left:right] = ok[y + top : y + bottom, x + left : x + right]
            yield image[:, y : y + rows, x : x + cols], own

    with predictor.one_statistic(grid):
        for start, blended, _ in blend_rows(predictor, plan, strips, batch_size):
            probs[:, start : start + blended.shape[1]] = blended
    classes = probs.argmax(0)
    classes[~ok] = NODATA_CLASS
    return Prediction(probs, classes)


__all__ = [
    "ENGINES",
    "NODATA_CLASS",
    "Prediction",
    "Predictor",
    "default_window",
    "finite_mask",
    "predict_array",
]
