"""Sliding-window segmentation of rasters of any size with an (adapted) bundle.

:class:`Predictor` turns raw image windows into class probabilities (normalisation with
the bundle's statistics, padding to the network's size divisor, the learner's
``predict`` with the adapted state, softmax). :func:`predict_array` segments an in-memory
image; :func:`predict_raster` streams a raster on disk through overlapping windows
(:mod:`landcover.inference.sliding`): it reads one strip of rows at a time, blends the
windows' probabilities smoothly, and writes finished rows to the output GeoTIFF as it
goes, so memory is bounded by one strip whatever the raster's height. CRS, transform and
nodata are kept; the class map carries the classes' colour table; optional outputs are
per-class probabilities (float32 bands) and per-class polygons (GeoJSON).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rasterio.windows import Window
from torch import Tensor
from tqdm import tqdm

from landcover.geo.raster import RasterWriter, class_map_writer, read_profile, read_raster
from landcover.inference.bundle import ModelBundle, find_model
from landcover.inference.errors import BundleError
from landcover.inference.sliding import StripBlender, WindowPlan
from landcover.meta.protocol import AdaptedState

#: Class-map value of pixels where the input has no data.
NODATA_CLASS = 255


class Predictor:
    """Raw image windows -> class probabilities, for one (adapted) bundle.

    A meta bundle predicts with its meta-learned weights (meaningful for the pretrained
    baseline; for meta-learners adapt first). Build with :meth:`from_bundle`.

    Thread-safe: ``torch.func.functional_call`` swaps tensors into the module while it
    runs, so concurrent forwards through one predictor (the service caches predictors)
    are serialised by a lock.
    """

    def __init__(
        self, bundle: ModelBundle, learner: Any, state: AdaptedState, device: torch.device
    ) -> None:
        self.bundle = bundle
        self.learner = learner
        self.state = state
        self.device = device
        self.size_divisor = int(find_model(learner).size_divisor)
        self.num_classes = len(bundle.class_names)
        self._lock = threading.Lock()

    @classmethod
    def from_bundle(cls, bundle: ModelBundle, device: str | torch.device = "cpu") -> Predictor:
        """Load the learner and the adapted state (an empty state for meta bundles)."""
        device = torch.device(device)
        learner = bundle.build_learner(device)
        state = bundle.adapted_state(device) if bundle.kind == "adapted" else AdaptedState()
        return cls(bundle, learner, state, device)

    def probabilities(self, x: Tensor) -> Tensor:
        """``(N, K, h, w)`` class probabilities of raw ``(N, C, h, w)`` windows."""
        self.bundle.check_bands(x.shape[1])
        h, w = x.shape[-2:]
        x = torch.nan_to_num(self.bundle.normalize(x.float()), nan=0.0).to(self.device)
        d = self.size_divisor
        ph, pw = (-h) % d, (-w) % d
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        with self._lock, torch.no_grad():
            try:
                logits = self.learner.predict(self.state, x)
            except (KeyError, TypeError, AttributeError) as err:
                raise BundleError(
                    f"the learner could not predict with this bundle ({err!r}); "
                    "a meta-learned bundle must be adapted first: `landcover adapt`"
                ) from err
        return torch.softmax(logits.float(), dim=1)[..., :h, :w].cpu()


@dataclass
class Prediction:
    """In-memory result of :func:`predict_array`.

    Attributes:
        probabilities: ``(K, H, W)`` blended class probabilities.
        classes: ``(H, W)`` int64 class indices, :data:`NODATA_CLASS` where invalid.
    """

    probabilities: Tensor
    classes: Tensor


@dataclass
class RasterPrediction:
    """Outcome of :func:`predict_raster`.

    Attributes:
        classes_path: The class-map GeoTIFF.
        probabilities_path: The probability GeoTIFF, if written.
        geojson_path: The polygon GeoJSON, if written.
        width: Raster columns.
        height: Raster rows.
        windows: Number of windows predicted.
        seconds: Wall-clock time.
    """

    classes_path: Path
    probabilities_path: Path | None
    geojson_path: Path | None
    width: int
    height: int
    windows: int
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pixels_per_second(self) -> float:
        """Throughput of the whole path (read, predict, blend, write)."""
        return self.width * self.height / max(self.seconds, 1e-9)


def default_window(bundle: ModelBundle) -> int:
    """Default window size: the training tile size, at least 256 px."""
    return max(int(bundle.tile_size), 256)


def _window_batches(
    strip: Tensor, valid: Tensor, plan: WindowPlan, batch_size: int
) -> Iterator[tuple[list[int], Tensor]]:
    # Windows without a single valid pixel are skipped: all their pixels become nodata.
    cols = [c for c, x in enumerate(plan.col_starts) if bool(valid[:, x : x + plan.win_w].any())]
    for i in range(0, len(cols), batch_size):
        chunk = cols[i : i + batch_size]
        yield (
            chunk,
            torch.stack([strip[:, :, plan.col_starts[c] : plan.col_starts[c] + plan.win_w]
                         for c in chunk]),
        )  # fmt: skip


def _blend_rows(
    predictor: Predictor,
    plan: WindowPlan,
    read_strip: Any,
    batch_size: int,
    bar: tqdm | None,
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Yield ``(first_row, probabilities (K, n, W), valid (n, W))`` strip by strip."""
    blender = StripBlender(plan, predictor.num_classes)
    for r, y0 in enumerate(plan.row_starts):
        strip, valid = read_strip(y0, plan.win_h)
        for chunk, batch in _window_batches(strip, valid, plan, batch_size):
            probs = predictor.probabilities(batch)
            for c, p in zip(chunk, probs):
                blender.add(r, c, p)
        if bar is not None:
            bar.update(len(plan.col_starts))
        start, blended = blender.finish_row(r)
        yield start, blended, valid[: blended.shape[1]]


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
        valid: ``(H, W)`` bool, ``False`` where the image has no data.
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
    plan = WindowPlan.make(h, w, window, overlap)
    ok = torch.ones(h, w, dtype=torch.bool) if valid is None else valid.bool()
    probs = torch.empty(predictor.num_classes, h, w)
    read = lambda y0, n: (image[:, y0 : y0 + n], ok[y0 : y0 + n])  # noqa: E731
    for start, blended, _ in _blend_rows(predictor, plan, read, batch_size, None):
        probs[:, start : start + blended.shape[1]] = blended
    classes = probs.argmax(0)
    classes[~ok] = NODATA_CLASS
    return Prediction(probs, classes)


def predict_raster(
    predictor: Predictor,
    src: str | Path,
    out: str | Path,
    *,
    window: int | None = None,
    overlap: int | None = None,
    probabilities: str | Path | None = None,
    geojson: str | Path | None = None,
    cog: bool = False,
    batch_size: int = 4,
    progress: bool = True,
) -> RasterPrediction:
    """Segment a raster on disk into a class-map GeoTIFF, streaming strip by strip.

    Args:
        predictor: The bundle's predictor.
        src: Input raster (its bands must be the bundle's bands).
        out: Output class map: uint8 class indices, colour table, nodata 255 where the
            input has no data, the input's CRS and transform.
        window: Window size (default :func:`default_window`).
        overlap: Overlap of neighbouring windows (default ``window // 4``).
        probabilities: Also write float32 per-class probabilities here (nodata ``nan``).
        geojson: Also write per-class polygons here (see :mod:`.vectorize`).
        cog: Write Cloud-Optimized GeoTIFFs.
        batch_size: Windows per forward pass.
        progress: Show a progress bar.

    Returns:
        Output paths, size and timing.
    """
    start_time = time.perf_counter()
    profile = read_profile(src)
    predictor.bundle.check_bands(profile.count, source=str(src))
    if predictor.num_classes >= NODATA_CLASS:
        raise BundleError(f"class maps hold at most 254 classes; the model has "
                          f"{predictor.num_classes}")  # fmt: skip
    window = window or default_window(predictor.bundle)
    overlap = window // 4 if overlap is None else overlap
    plan = WindowPlan.make(profile.height, profile.width, window, overlap)
    scheme = predictor.bundle.scheme()

    def read_strip(y0: int, n: int) -> tuple[Tensor, Tensor]:
        data = read_raster(src, window=Window(0, y0, profile.width, n))
        return data.image, data.valid

    writers: list[RasterWriter] = [class_map_writer(out, profile, scheme, nodata=NODATA_CLASS,
                                                    cog=cog)]  # fmt: skip
    if probabilities is not None:
        writers.append(RasterWriter(
            probabilities, profile, count=predictor.num_classes, dtype="float32",
            nodata=float("nan"), descriptions=predictor.bundle.class_names, cog=cog,
        ))  # fmt: skip
    bar = tqdm(total=len(plan), desc="predict", unit="win", disable=not progress)
    try:
        for start, blended, valid in _blend_rows(predictor, plan, read_strip, batch_size, bar):
            n = blended.shape[1]
            win = Window(0, start, profile.width, n)
            classes = blended.argmax(0).to(torch.uint8)
            classes[~valid] = NODATA_CLASS
            writers[0].write(classes, win)
            if probabilities is not None:
                writers[1].write(blended.masked_fill(~valid, float("nan")), win)
        paths = [w.close() for w in writers]
    except BaseException:
        for w in writers:
            w.abort()
        raise
    finally:
        bar.close()
    geo_path = None
    if geojson is not None:
        from landcover.inference.vectorize import write_geojson

        geo_path = write_geojson(paths[0], geojson, scheme)
    return RasterPrediction(
        paths[0],
        paths[1] if probabilities is not None else None,
        geo_path,
        profile.width,
        profile.height,
        len(plan),
        time.perf_counter() - start_time,
    )
