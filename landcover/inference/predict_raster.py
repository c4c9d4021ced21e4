"""Segment a raster on disk of any size: a read -> predict -> write pipeline.

The raster streams through overlapping windows (:mod:`landcover.inference.sliding`) one
*strip* (one row of windows) at a time, in three stages that overlap in time:

- a reader thread reads the next strip of raw bands with rasterio (GDAL releases the GIL)
  and its validity (:func:`~landcover.geo.raster.band_validity`: every band's declared
  nodata value, whatever it is, masks and alpha bands, and NaN/inf even in rasters without
  a nodata tag); nodata pixels are set to NaN, so that a finite nodata value such as
  -99999 never reaches the network (the predictor feeds them as the band means, exactly
  as a NaN-nodata raster);
- the calling thread runs the network on the strip's windows (torch or ONNX Runtime, both
  release the GIL in their kernels) and blends them;
- a writer thread takes the finished rows, forms the class map (argmax) and writes it
  (and the probabilities) to the output GeoTIFFs.

Queues between the stages hold at most two strips, so memory stays bounded by a few
strips whatever the raster's height. CRS, transform and nodata are kept; the class map has
the class file's values (or class indices, ``class_values="index"``), the classes' colour
table keyed by those values, class names as band tags, and, with ``style=True``, a QGIS
style and GDAL category names as sidecars (:mod:`landcover.geo.qgis_style`); optional
outputs are per-class probabilities (float32 bands) and generalised polygons (GeoJSON,
GeoPackage; :mod:`landcover.inference.vectorize`).
"""

from __future__ import annotations

import queue
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from tqdm import tqdm

from landcover.geo.errors import GeoDataError
from landcover.geo.map_values import map_scheme, value_lut
from landcover.geo.raster import (
    band_validity,
    data_bands,
    open_raster,
    read_profile,
)
from landcover.geo.writer import RasterWriter, class_map_writer
from landcover.inference.errors import BundleError
from landcover.inference.predict import (
    NODATA_CLASS,
    Predictor,
    blend_rows,
    default_window,
)
from landcover.inference.raster_norm import grid_windows
from landcover.inference.sliding import WindowPlan, balanced_window, pad_to
from landcover.inference.vectorize import VectorOptions

__all__ = ["RasterPrediction", "VectorOptions", "predict_raster"]

#: Strips buffered between the pipeline's stages.
QUEUE_DEPTH = 2
#: GDAL's block cache during prediction (default: 5 % of the RAM): each input block is
#: read about once and output blocks are written row by row, so a small cache suffices
#: and the peak memory does not grow with the raster.
GDAL_CACHE_BYTES = 256 * 2**20
_DONE = object()


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
        info: ``gpkg_path``, ``sidecars`` (QGIS style, PAM), ``engine``; with vectors
            ``polygons`` and ``vector_seconds``.
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


def _in_thread(produce: Iterator[Any], depth: int = QUEUE_DEPTH) -> Iterator[Any]:
    """Run a generator in a background thread; yield its items (errors re-raised here)."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run() -> None:
        try:
            for item in produce:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as err:  # handed to the consumer
            q.put(err)

    thread = threading.Thread(target=run, name="landcover-read", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class _Writer:
    """Consume finished rows in a background thread (``submit`` blocks when 2 are queued)."""

    def __init__(self, write: Callable[..., None]) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._write = write
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="landcover-write", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._q.get()) is not _DONE:
            if self.error is None:
                try:
                    self._write(*item)
                except BaseException as err:  # re-raised by submit/close
                    self.error = err

    def submit(self, *item: Any) -> None:
        if self.error is not None:
            raise self.error
        self._q.put(item)

    def close(self) -> None:
        self._q.put(_DONE)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Stop the thread, dropping what is queued (after an error elsewhere)."""
        if self._thread.is_alive():
            self.error = self.error or RuntimeError("aborted")
            self._q.put(_DONE)
            self._thread.join()


def _strips(
    src_path: str | Path, plan: WindowPlan, bands: list[int]
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Raw bands and validity of each strip of windows (one open dataset throughout).

    Strips are mirrored at the bottom and right edge to the plan's padded size
    (:func:`~landcover.inference.sliding.pad_to`).
    """
    with warnings.catch_warnings():  # rasters without georeferencing are fine here
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        src = rasterio.open(src_path)
    with src:
        for y0 in plan.row_starts:
            win = Window(0, y0, src.width, min(plan.win_h, src.height - y0))
            try:
                data = src.read(bands, window=win)
                valid = band_validity(src, bands, data, win)
            except rasterio.errors.RasterioIOError as err:
                raise GeoDataError(f"cannot read pixels (corrupt file?): {err}", src_path) from None
            if not valid.all():  # nodata never reaches the network, whatever its value
                data = data.astype(np.float32)
                data[:, ~valid] = np.nan
            yield (pad_to(data, plan.win_h, plan.width),
                   torch.from_numpy(pad_to(valid, plan.win_h, plan.width)))  # fmt: skip


def _grid(
    src_path: str | Path, multiple: int, bands: list[int]
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Raw bands and validity of a grid of windows over the raster (for one statistic)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        src = rasterio.open(src_path)
    with src:
        for y, x, rows, cols, top, bottom, left, right in grid_windows(
            src.height, src.width, multiple
        ):
            win = Window(x, y, cols, rows)
            try:
                data = src.read(bands, window=win)
                valid = band_validity(src, bands, data, win)
            except rasterio.errors.RasterioIOError as err:
                raise GeoDataError(f"cannot read pixels (corrupt file?): {err}", src_path) from None
            data = data.astype(np.float32)
            data[:, ~valid] = np.nan  # as in prediction: nodata is no statistic's pixel
            own = np.zeros_like(valid)  # the window's owned part
            own[top:bottom, left:right] = True
            valid &= own
            yield torch.from_numpy(data), torch.from_numpy(valid)


def predict_raster(
    predictor: Predictor,
    src: str | Path,
    out: str | Path,
    *,
    window: int | None = None,
    overlap: int | None = None,
    probabilities: str | Path | None = None,
    geojson: str | Path | None = None,
    gpkg: str | Path | None = None,
    vector: VectorOptions | None = None,
    style: bool = False,
    cog: bool = False,
    batch_size: int = 4,
    progress: bool = True,
    compress: str | None = "deflate",
    balance: bool = False,
    class_values: str = "file",
    nodata: int = NODATA_CLASS,
) -> RasterPrediction:
    """Segment a raster on disk into a class-map GeoTIFF, streaming strip by strip.

    Args:
        predictor: The bundle's predictor (its engine runs the network).
        src: Input raster (its bands must be the bundle's bands).
        out: Output class map: uint8 class values (see ``class_values``), colour table,
            ``nodata`` where the input has no data, the input's CRS and transform.
        window: Window size (default :func:`default_window`).
        overlap: Overlap of neighbouring windows (default ``window // 4``).
        probabilities: Also write float32 per-class probabilities here (nodata ``nan``).
        geojson: Also write generalised polygons here (WGS 84).
        gpkg: Also write generalised polygons as a GeoPackage (the raster's CRS).
        vector: Minimum mapping unit and simplification of the polygons (default
            :class:`VectorOptions`: 16 px, 1 px).
        style: Write QGIS styles (``.qml``) and GDAL category names (``.aux.xml``) next to
            the class map, the probabilities and the GeoJSON (unless the GeoJSON has the
            class map's name: QGIS reads ``NAME.qml`` for both; ``info["notes"]`` says so).
            The GeoPackage always carries its style inside.
        cog: Write Cloud-Optimized GeoTIFFs.
        batch_size: Windows per forward pass.
        progress: Show a progress bar (windows per second, time left).
        compress: GDAL compression of the outputs.
        balance: Shrink the window (down to half) to the size that computes the fewest
            pixels for this raster (:func:`~landcover.inference.sliding.balanced_window`).
        class_values: ``"file"``: the map (and its colour table, names, styles, polygons'
            ``class_id``) holds the class file's values, e.g. 1..7; ``"index"``: the class
            indices 0..n-1 (:mod:`landcover.geo.map_values`).
        nodata: The class map's value of pixels without data (255 by default; no class may
            take it). With every value below 16 (e.g. 0 for classes 1..7) the map is
            packed into 4 bits or fewer and its colour table, which QGIS lists as the
            legend of the file alone, has 16 entries or fewer instead of 256
            (:func:`~landcover.geo.writer.class_map_writer`).

    Returns:
        Output paths, size and timing.
    """
    start_time = time.perf_counter()
    profile = read_profile(src)
    with open_raster(src) as ds:  # an alpha band is the mask, not data
        bands = data_bands(ds, predictor.bundle.num_bands)
    predictor.bundle.check_bands(len(bands), source=str(src))
    if predictor.num_classes >= NODATA_CLASS:
        raise BundleError(f"class maps hold at most 254 classes; the model has "
                          f"{predictor.num_classes}")  # fmt: skip
    window = window or default_window(predictor.bundle)
    overlap = window // 4 if overlap is None else overlap
    if not 0 <= overlap < window:
        raise ValueError(f"the overlap ({overlap}) must be smaller than the window ({window})")
    if balance:
        d = predictor.size_divisor
        window = balanced_window(-(-profile.height // d) * d, -(-profile.width // d) * d,
                                 window, overlap, multiple=max(8, d))  # fmt: skip
    plan = WindowPlan.make(profile.height, profile.width, window, overlap,
                           predictor.size_divisor)  # fmt: skip
    scheme = map_scheme(predictor.bundle.scheme(), class_values, NODATA_CLASS)
    if nodata != NODATA_CLASS:
        taken = dict(zip(scheme.raw_values(), scheme.names))
        if not 0 <= nodata <= 255 or nodata in taken:
            why = f"class {taken[nodata]!r} has it" if nodata in taken else "not in 0..255"
            raise ValueError(f"the class map's nodata value {nodata} is not free ({why}); "
                             f"choose a value no class has (--map-nodata)")  # fmt: skip
        scheme = map_scheme(scheme, "file", nodata)
    to_value = torch.from_numpy(value_lut(scheme, nodata))  # index 255 (no data) -> nodata
    vectors = geojson is not None or gpkg is not None
    tmp_dir = tempfile.TemporaryDirectory(prefix="landcover-vec-") if vectors else None
    probs_path = probabilities
    if probs_path is None and tmp_dir is not None:  # mean probability of each polygon
        probs_path = Path(tmp_dir.name) / "probabilities.tif"
    keep_probs = probs_path is not None

    writers: list[RasterWriter] = [class_map_writer(out, profile, scheme, nodata=nodata,
                                                    cog=cog, compress=compress)]  # fmt: skip
    if keep_probs:
        tmp = probabilities is None
        writers.append(RasterWriter(
            probs_path, profile, count=predictor.num_classes,
            dtype="uint8" if tmp else "float32", nodata=None if tmp else float("nan"),
            descriptions=predictor.bundle.class_names, cog=cog and not tmp, compress=compress,
        ))  # fmt: skip

    def write(start: int, blended: torch.Tensor, valid: torch.Tensor) -> None:
        win = Window(0, start, profile.width, blended.shape[-2])
        classes = blended.argmax(0).to(torch.uint8) if keep_probs else blended
        writers[0].write(to_value[classes.masked_fill(~valid, NODATA_CLASS).long()], win)
        if keep_probs and probabilities is None:
            writers[1].write((blended * 255).round_().to(torch.uint8), win)
        elif keep_probs:
            writers[1].write(blended.masked_fill(~valid, float("nan")), win)

    bar = tqdm(total=len(plan), desc=f"predict {profile.width}x{profile.height}", unit="win",
               disable=not progress, smoothing=0.1)  # fmt: skip
    writer = _Writer(write)
    try:
        with (
            rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES),
            predictor.one_statistic(lambda: _grid(src, predictor.size_divisor, bands)),
        ):
            strips = _in_thread(_strips(src, plan, bands))
            for row in blend_rows(predictor, plan, strips, batch_size, bar,
                                  argmax=not keep_probs):  # fmt: skip
                writer.submit(*row)
            writer.close()
            paths = [w.close() for w in writers]
    except BaseException:
        writer.abort()
        for w in writers:
            w.abort()
        if tmp_dir is not None:
            tmp_dir.cleanup()
        raise
    finally:
        bar.close()
    info: dict[str, Any] = {
        "engine": predictor.engine,
        "window": window,
        "overlap": overlap,
        "class_values": dict(zip(scheme.names, scheme.raw_values())),
        "nodata": nodata,
    }
    try:
        if style:
            from landcover.geo.qgis_style import write_class_map_sidecars, write_probabilities_style

            sidecars = write_class_map_sidecars(paths[0], scheme, nodata)
            info["sidecars"] = [str(p) for p in sidecars]
            if probabilities is not None:
                qml = write_probabilities_style(paths[1], predictor.bundle.class_names)
                info["sidecars"].append(str(qml))
        geo_path = None
        if vectors:
            from landcover.inference.vectorize import write_vectors

            opts = vector or VectorOptions()
            prob_file = paths[1] if keep_probs else None
            # one pass for both files (strip by strip, streamed)
            vec_start = time.perf_counter()
            written = write_vectors(paths[0], scheme, geojson=geojson, gpkg=gpkg, options=opts,
                                    probabilities=prob_file, nodata=nodata)  # fmt: skip
            info["vector_seconds"] = time.perf_counter() - vec_start
            info["polygons"] = written["polygons"]
            geo_path = written["geojson"]
            if geo_path is not None:
                shared = Path(geo_path).with_suffix(".qml") == Path(paths[0]).with_suffix(".qml")
                if style and shared:  # QGIS reads STEM.qml for both: the class map's wins
                    info["notes"] = [
                        f"no QGIS style for {geo_path}: {Path(geo_path).with_suffix('.qml')} "
                        "is the class map's; give the GeoJSON another name for a styled layer"
                    ]
                elif style:
                    from landcover.geo.vector_style import write_vector_qml

                    qml = write_vector_qml(geo_path, scheme)
                    info["sidecars"] = [*info.get("sidecars", []), str(qml)]
            if written["gpkg"] is not None:
                info["gpkg_path"] = written["gpkg"]
    finally:
        if tmp_dir is not None:
            tmp_dir.cleanup()
    return RasterPrediction(
        paths[0],
        paths[1] if probabilities is not None else None,
        geo_path,
        profile.width,
        profile.height,
        len(plan),
        time.perf_counter() - start_time,
        info,
    )
