"""The service's bridge to the product: base bundles, adaptation, prediction.

Everything model-related is done by :mod:`landcover.inference` (bundles, adaptation,
sliding-window prediction, GeoJSON and PNG writers). :class:`ModelEngine` holds the base
bundles of the models folder, a small cache of adapted predictors, and translates the
inference layer's ``ValueError`` on user input into 422 answers. Upload checks against a
model live in :mod:`api.validation`.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from api.compute import flops_per_pixel
from api.errors import BadInput, NotFound
from api.schemas import ClassInfo, ModelInfo
from api.validation import Support
from landcover.geo.classes import ClassScheme
from landcover.geo.map_values import map_scheme
from landcover.inference.adapt import adapt_bundle
from landcover.inference.bundle import ModelBundle
from landcover.inference.predict import Predictor
from landcover.inference.predict_raster import predict_raster
from landcover.inference.preview import preview_png, write_png

log = logging.getLogger("landcover.api.engine")

Format = Literal["geotiff", "png", "geojson"]
MEDIA: dict[str, tuple[str, str]] = {
    "geotiff": ("image/tiff", ".tif"),
    "png": ("image/png", ".png"),
    "geojson": ("application/geo+json", ".geojson"),
}


@dataclass(frozen=True)
class AdaptOutcome:
    """What an adaptation produced.

    Attributes:
        bundle: The adapted bundle (saved by the caller).
        miou_before: Support mIoU of the base model.
        miou_after: Support mIoU after adaptation.
        seconds: Time spent adapting and scoring.
        report: The adaptation report of :mod:`landcover.inference.adapt`, when it gives one.
    """

    bundle: ModelBundle
    miou_before: float
    miou_after: float
    seconds: float
    report: dict[str, Any] | None = None


class ModelEngine:
    """Base bundles of a models folder and the operations on them.

    Args:
        models_dir: Folder of ``*.bundle`` files; a model's name is its file stem.
        window: Sliding-window size for prediction (``None``: the inference default).
        cache_size: Adapted predictors kept in memory.
    """

    def __init__(self, models_dir: Path, *, window: int | None = None, cache_size: int = 8) -> None:
        self.models_dir = Path(models_dir)
        self.window = window
        self._bundles: dict[str, ModelBundle] = {}
        self._flops: dict[str, float] = {}
        self._problems: dict[str, str] = {}
        self._predictors: OrderedDict[str, Predictor] = OrderedDict()
        self.cache_size = cache_size
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ bundles
    def load_all(self) -> None:
        """(Re)load every bundle of the models folder; failures are kept as problems."""
        bundles, flops, problems = {}, {}, {}
        paths = sorted(self.models_dir.glob("*.bundle")) if self.models_dir.is_dir() else []
        for path in paths:
            try:
                bundle = self.load_bundle(path)
                flops[path.stem] = flops_per_pixel(bundle)
                bundles[path.stem] = bundle
            except Exception as exc:
                problems[path.stem] = f"{path.name}: {exc}"
                log.error("cannot load base model %s: %s", path, exc)
        with self._lock:
            self._bundles, self._flops, self._problems = bundles, flops, problems

    def flops_per_pixel(self, name: str) -> float:
        """FLOP of one forward pass per pixel of base model ``name`` (measured at load)."""
        with self._lock:
            known = self._flops.get(name)
        if known is not None:
            return known
        value = flops_per_pixel(self.base(name))
        with self._lock:
            self._flops[name] = value
        return value

    def problems(self) -> list[str]:
        """Why the engine is not ready (no models folder, bundles that failed to load)."""
        with self._lock:
            out = list(self._problems.values())
            empty = not self._bundles
        if empty:
            out.insert(
                0,
                f"no loadable *.bundle in the models folder {self.models_dir}; put a "
                "base model bundle there (landcover export) and restart",
            )
        return out

    def names(self) -> list[str]:
        """Names of the loaded base models."""
        with self._lock:
            return sorted(self._bundles)

    def base(self, name: str) -> ModelBundle:
        """The base bundle ``name``, or a 404 listing the available names."""
        with self._lock:
            bundle = self._bundles.get(name)
        if bundle is None:
            raise NotFound(
                f"model {name!r}",
                f"choose one of {self.names()} (GET /v1/models lists them)",
            )
        return bundle

    def info(self, name: str) -> ModelInfo:
        """Public description of a base model."""
        return self.describe(name, self.base(name))

    # The methods below are the only ones that touch landcover.inference's API.
    def load_bundle(self, path: Path) -> ModelBundle:
        """Load a bundle file (safetensors + JSON; never unpickles)."""
        return ModelBundle.load(path)

    def save_bundle(self, bundle: ModelBundle, path: Path) -> None:
        """Save a bundle (the caller makes the write atomic)."""
        bundle.save(path)

    def scheme(self, bundle: ModelBundle) -> ClassScheme:
        """Class scheme of a bundle."""
        return bundle.scheme()

    def bands(self, bundle: ModelBundle) -> list[str]:
        """Band names of a bundle."""
        return list(bundle.bands)

    def describe(self, name: str, bundle: ModelBundle) -> ModelInfo:
        """Public description of a bundle."""
        scheme = self.scheme(bundle)
        values = scheme.values
        classes = [
            ClassInfo(
                index=i,
                name=n,
                value=None if values is None else values[i],
                color=scheme.colors[i],
            )
            for i, n in enumerate(scheme.names)
        ]
        return ModelInfo(
            name=name,
            bands=self.bands(bundle),
            classes=classes,
            ignore_index=scheme.ignore_index,
            mask_values=scheme.describe_values(),
            tile_size=int(bundle.tile_size),
            inner_steps=bundle.inner_steps,
            learner=str(bundle.learner["name"]),
            arch=str(bundle.model["arch"]),
            version=str(bundle.landcover_version),
            flop_per_pixel=self.flops_per_pixel(name),
        )

    def adapt(self, bundle: ModelBundle, support: Support, steps: int | None) -> AdaptOutcome:
        """Adapt ``bundle`` to a validated support set.

        Raises:
            BadInput: The inference layer refused the support set.
        """
        images = [torch.from_numpy(np.ascontiguousarray(i)) for i in support.images]
        masks = [torch.from_numpy(np.ascontiguousarray(m)) for m in support.masks]
        try:
            result = adapt_bundle(bundle, images, masks, steps=steps)
        except ValueError as err:
            raise BadInput(
                f"adaptation rejected the support set: {err}", "invalid_support"
            ) from None
        return AdaptOutcome(
            bundle=result.bundle,
            miou_before=float(result.miou_before),
            miou_after=float(result.miou_after),
            seconds=float(result.seconds),
            report=result.report(),
        )

    def predictor(self, bundle: ModelBundle, key: str | None = None) -> Predictor:
        """A predictor for ``bundle``; with ``key``, cached (least recently used out)."""
        if key is None:
            return Predictor.from_bundle(bundle)
        with self._lock:
            if key in self._predictors:
                self._predictors.move_to_end(key)
                return self._predictors[key]
        predictor = Predictor.from_bundle(bundle)
        with self._lock:
            self._predictors[key] = predictor
            while len(self._predictors) > self.cache_size:
                self._predictors.popitem(last=False)
        return predictor

    def cached_predictor(self, key: str, path: Path) -> Predictor:
        """The cached predictor of the bundle stored at ``path`` under ``key``."""
        with self._lock:
            hit = self._predictors.get(key)
        return hit if hit is not None else self.predictor(self.load_bundle(path), key)

    def forget(self, key: str) -> None:
        """Drop a cached predictor (its adaptation was deleted)."""
        with self._lock:
            self._predictors.pop(key, None)

    def predict(self, predictor: Predictor, raster: Path, out: Path, fmt: Format) -> Path:
        """Segment ``raster`` into ``out`` (GeoTIFF, PNG preview or GeoJSON polygons).

        The raster streams through :func:`landcover.inference.predict_raster.predict_raster` strip
        by strip; PNG and GeoJSON are derived from the class-map GeoTIFF it writes.
        """
        if fmt == "geotiff":
            predict_raster(predictor, raster, out, window=self.window, progress=False)
            return out
        classes = out.with_name(out.stem + ".classes.tif")
        try:
            if fmt == "geojson":
                predict_raster(
                    predictor, raster, classes, window=self.window, geojson=out, progress=False
                )
            else:
                predict_raster(predictor, raster, classes, window=self.window, progress=False)
                write_png(out, preview_png(classes, map_scheme(predictor.bundle.scheme())))
        finally:
            classes.unlink(missing_ok=True)
        return out


def media(fmt: Format) -> tuple[str, str]:
    """``(media type, file suffix)`` of an output format."""
    return MEDIA[fmt]
