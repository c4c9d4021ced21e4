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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from api.errors import ApiError, BadInput, NotFound, TooLarge
from api.schemas import ClassInfo, ModelInfo
from api.uploads import Staged
from landcover.geo.classes import ClassScheme
from landcover.geo.errors import GeoDataError, MaskValueError
from landcover.geo.folder import read_region_folder
from landcover.geo.raster import RasterProfile, read_profile, read_raster

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

    bundle: Any
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
        window: Sliding-window size for prediction (``None``: the bundle's tile size).
    """

    def __init__(self, models_dir: Path, *, window: int | None = None) -> None:
        self.models_dir = Path(models_dir)
        self.window = window
        self._bundles: dict[str, Any] = {}
        self._problems: dict[str, str] = {}
        self._lock = threading.Lock()

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

    def base(self, name: str) -> Any:
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

    # The five methods below are the only ones that touch a bundle's API.
    def load_bundle(self, path: Path) -> Any:
        """Load a bundle file (never unpickles)."""
        from landcover.inference.bundle import ModelBundle

        return ModelBundle.load(path)

    def save_bundle(self, bundle: Any, path: Path) -> None:
        """Save a bundle atomically (temporary file + rename)."""
        bundle.save(path)

    def scheme(self, bundle: Any) -> ClassScheme:
        """Class scheme of a bundle."""
        return bundle.scheme

    def bands(self, bundle: Any) -> list[str]:
        """Band names of a bundle."""
        return list(bundle.band_names)

    def describe(self, name: str, bundle: Any) -> ModelInfo:
        """Public description of a bundle."""
        scheme = self.scheme(bundle)
        values = scheme.values
        return ModelInfo(
            name=name,
            bands=self.bands(bundle),
            classes=[
                ClassInfo(
                    index=i,
                    name=n,
                    value=None if values is None else values[i],
                    color=scheme.colors[i],
                )
                for i, n in enumerate(scheme.names)
            ],
            ignore_index=scheme.ignore_index,
            mask_values=scheme.describe_values(),
            tile_size=int(bundle.tile_size),
            inner_steps=int(bundle.inner_steps),
            learner=str(bundle.learner_name),
            arch=str(bundle.model_config["arch"]),
            version=str(bundle.version),
        )

    def adapt(self, bundle: Any, support: Support, steps: int | None) -> AdaptOutcome:
        """Adapt ``bundle`` to a validated support set."""
        from landcover.inference.adapt import adapt_bundle

        try:
            result = adapt_bundle(bundle, support.images, support.masks, steps=steps)
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

    def predict(self, bundle: Any, raster: Path, out: Path, fmt: Format) -> Path:
        """Segment ``raster`` with ``bundle`` and write ``out`` in ``fmt``."""
        from landcover.inference import predict as inference

        if fmt == "geotiff":
            inference.predict_raster(bundle, raster, out, window=self.window)
        elif fmt == "png":
            inference.predict_png(bundle, raster, out, window=self.window)
        else:
            inference.predict_geojson(bundle, raster, out, window=self.window)
        return out

    # ------------------------------------------------------------------ validation
    def check_raster(self, bundle: Any, path: Path, label: str, max_pixels: int) -> RasterProfile:
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

    def _check_bands(self, bundle: Any, count: int, label: str) -> None:
        bands = self.bands(bundle)
        if count != len(bands):
            raise BadInput(
                f"{label} has {count} band(s) but the model expects {len(bands)} "
                f"({', '.join(bands)}); upload rasters with exactly these bands in this order",
                "band_mismatch",
            )

    def read_support(self, bundle: Any, staged: Staged, max_tile_pixels: int) -> Support:
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


def raise_for_bundle(err: Exception) -> ApiError:
    """Translate an inference-layer ``ValueError`` on user input into a 422."""
    return BadInput(str(err), "invalid_input")
