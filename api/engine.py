"""The service's bridge to the product: base bundles, support validation, adapt, predict.

Everything model-related is done by :mod:`landcover.inference` (bundles, adaptation,
sliding-window prediction, writers) and every file is read by :mod:`landcover.geo`
(rasters, the users' folder format, class schemes). This module only chooses what to call,
checks inputs against the chosen model (bands, classes, limits) and translates the data
layer's errors into 4xx answers whose detail names the client's file, not a staging path.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from api.errors import BadInput, NotFound, TooLarge
from api.schemas import ClassInfo, ModelInfo
from api.uploads import Staged
from landcover.geo.classes import ClassScheme
from landcover.geo.errors import GeoDataError, MaskValueError
from landcover.geo.folder import read_region_folder
from landcover.geo.raster import RasterProfile, read_profile, read_raster
from landcover.inference.adapt import adapt_bundle
from landcover.inference.bundle import ModelBundle
from landcover.inference.predict import Predictor, predict_raster
from landcover.inference.preview import preview_png, write_png

log = logging.getLogger("landcover.api.engine")

Format = Literal["geotiff", "png", "geojson"]
MEDIA: dict[str, tuple[str, str]] = {
    "geotiff": ("image/tiff", ".tif"),
    "png": ("image/png", ".png"),
    "geojson": ("application/geo+json", ".geojson"),
}


@dataclass(frozen=True)
class Support:
    """A validated support set, ready for adaptation.

    Attributes:
        images: Raw band values, float32 ``(C, H, W)`` per tile.
        masks: Class indices of the model's scheme, int64 ``(H, W)`` (ignore index allowed).
    """

    images: list[np.ndarray]
    masks: list[np.ndarray]


@dataclass(frozen=True)
class AdaptOutcome:
    """What an adaptation produced.

    Attributes:
        bundle: The adapted bundle (saved by the caller).
        miou_before: Support mIoU of the base model.
        miou_after: Support mIoU after adaptation.
        seconds: Time spent adapting and scoring.
    """

    bundle: ModelBundle
    miou_before: float
    miou_after: float
    seconds: float


def _bad(staged: Staged | None, err: Exception, code: str, hint: str = "") -> BadInput:
    message = str(err) if staged is None else staged.explain(str(err))
    return BadInput(message + (f" {hint}" if hint else ""), code)


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
        self._problems: dict[str, str] = {}
        self._predictors: OrderedDict[str, Predictor] = OrderedDict()
        self.cache_size = cache_size
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ bundles
    def load_all(self) -> None:
        """(Re)load every bundle of the models folder; failures are kept as problems."""
        bundles, problems = {}, {}
        paths = sorted(self.models_dir.glob("*.bundle")) if self.models_dir.is_dir() else []
        for path in paths:
            try:
                bundles[path.stem] = self.load_bundle(path)
            except Exception as exc:
                problems[path.stem] = f"{path.name}: {exc}"
                log.error("cannot load base model %s: %s", path, exc)
        with self._lock:
            self._bundles, self._problems = bundles, problems

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

        The raster streams through :func:`landcover.inference.predict.predict_raster` strip
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
                write_png(out, preview_png(classes, predictor.bundle.scheme()))
        finally:
            classes.unlink(missing_ok=True)
        return out

    # ------------------------------------------------------------------ validation
    def check_raster(
        self, bundle: ModelBundle, path: Path, label: str, max_pixels: int
    ) -> RasterProfile:
        """Check an uploaded raster against the limits and the model's bands.

        Raises:
            BadInput: Unreadable/corrupt raster (422) or band count mismatch (422).
            TooLarge: More pixels than ``max_pixels`` (413).
        """
        try:
            profile = read_profile(path)
        except GeoDataError as err:
            raise BadInput(
                f"raster {label} cannot be read: {_strip_path(err, path)}. Upload an intact "
                "GeoTIFF, PNG or JPEG",
                "corrupt_raster",
            ) from None
        pixels = profile.width * profile.height
        if pixels > max_pixels:
            raise TooLarge(
                f"raster {label} has {profile.width}×{profile.height} = {pixels} pixels, more "
                f"than this service's limit of {max_pixels}; split it into smaller rasters",
                "too_many_pixels",
            )
        self._check_bands(bundle, profile.count, label)
        return profile

    def _check_bands(self, bundle: ModelBundle, count: int, label: str) -> None:
        bands = self.bands(bundle)
        if count != len(bands):
            raise BadInput(
                f"{label} has {count} band(s) but the model expects {len(bands)} "
                f"({', '.join(bands)}); upload rasters with exactly these bands in this order",
                "band_mismatch",
            )

    def read_support(self, bundle: ModelBundle, staged: Staged, max_tile_pixels: int) -> Support:
        """Read and validate staged support tiles with the geo folder reader.

        Checks, each a 4xx naming the client's file: readable rasters, pixel limit, band
        count, image/mask sizes, mask values within the classes, tiles with labeled data.
        """
        model_scheme = self.scheme(bundle)
        lut: np.ndarray | None = None
        if staged.class_file is not None:
            try:
                scheme = ClassScheme.from_file(staged.class_file)
            except GeoDataError as err:
                raise _bad(staged, err, "invalid_class_file") from None
            unknown = [n for n in scheme.names if n not in model_scheme.names]
            if unknown:
                raise BadInput(
                    f"class file {staged.names[str(staged.class_file)]} names classes the model "
                    f"does not know: {unknown}; the model's classes are "
                    f"{list(model_scheme.names)} (rename them, or drop the class file to use "
                    f"the model's mask values: {model_scheme.describe_values()})",
                    "unknown_classes",
                )
            lut = np.full(256, model_scheme.ignore_index, dtype=np.int64)
            for i, n in enumerate(scheme.names):
                lut[i] = model_scheme.names.index(n)
        else:
            scheme = model_scheme
        for path in sorted((staged.folder / "images").iterdir()):
            label = staged.names[str(path)]
            try:
                profile = read_profile(path)
            except GeoDataError as err:
                raise BadInput(
                    f"image {label} cannot be read: {_strip_path(err, path)}. Upload an "
                    "intact GeoTIFF, PNG or JPEG",
                    "corrupt_raster",
                ) from None
            if profile.width * profile.height > max_tile_pixels:
                raise TooLarge(
                    f"tile {label} has {profile.width}×{profile.height} pixels, more than the "
                    f"limit of {max_tile_pixels} per tile; cut it into smaller tiles",
                    "too_many_pixels",
                )
            self._check_bands(bundle, profile.count, f"image {label}")
        try:
            region = read_region_folder(staged.folder, scheme, validate=True, cache=True)
            samples = list(region)
        except MaskValueError as err:
            raise _bad(staged, err, "mask_values") from None
        except GeoDataError as err:
            code = "size_mismatch" if "must match their images" in str(err) else "invalid_tile"
            raise _bad(staged, err, code) from None
        images, masks = [], []
        for sample, ref in zip(samples, region.tiles):
            mask = sample["mask"].numpy().astype(np.int64)
            if lut is not None:
                mask = lut[np.clip(mask, 0, 255)]
            image_path = next((staged.folder / "images").glob(f"{ref.key}.*"))
            label = staged.names[str(image_path)]
            if not (mask != model_scheme.ignore_index).any():
                valid = read_raster(image_path).valid
                if not bool(valid.any()):
                    raise BadInput(
                        f"image {label} is all nodata: every pixel equals its nodata value or "
                        "is masked out; drop it or upload a tile that covers data",
                        "all_nodata",
                    )
                raise BadInput(
                    f"mask of {label} labels no pixel (all ignore value); label at least "
                    "some pixels with a class, or drop the tile",
                    "no_labels",
                )
            images.append(sample["image"].numpy().astype(np.float32))
            masks.append(mask)
        return Support(images, masks)


def _strip_path(err: Exception, path: Path) -> str:
    """A data-layer message without the staging path it starts with."""
    return str(err).replace(f"{path}: ", "").replace(str(path), "the file")


def media(fmt: Format) -> tuple[str, str]:
    """``(media type, file suffix)`` of an output format."""
    return MEDIA[fmt]
