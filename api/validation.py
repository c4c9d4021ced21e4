"""Validation of uploads against a model: support tiles and rasters to segment.

Files are read by :mod:`landcover.geo` (its users'-folder reader runs on the staged copy
of the upload, see :mod:`api.uploads`); this module adds the checks that depend on the
chosen model (bands, classes), the service's limits (pixels per tile or raster), and turns
the data layer's errors into 4xx answers whose detail names the client's file rather than
a staging path. Nothing here writes anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
from fastapi import UploadFile
from rasterio.enums import ColorInterp

from api.cutting import crops_of_tile
from api.errors import BadInput, TooLarge
from api.settings import Settings
from api.uploads import Staged, stage_support
from landcover.geo.classes import ClassScheme, excerpt
from landcover.geo.errors import GeoDataError, MaskValueError
from landcover.geo.folder import read_region_folder
from landcover.geo.raster import RasterProfile, read_profile, read_raster
from landcover.inference.adapt import input_pixel_budget
from landcover.inference.bundle import ModelBundle


@dataclass(frozen=True)
class Support:
    """A validated support set, ready for adaptation.

    Attributes:
        images: Raw band values, float32 ``(C, H, W)`` per tile.
        masks: Class indices of the model's scheme, int64 ``(H, W)`` (ignore index allowed).
    """

    images: list[np.ndarray]
    masks: list[np.ndarray]
    source_pixels: int | None = None

    @property
    def pixels(self) -> int:
        """Pixels of the tiles as uploaded (before :mod:`api.cutting` cut them)."""
        if self.source_pixels is not None:
            return self.source_pixels
        return sum(int(i.shape[-1]) * int(i.shape[-2]) for i in self.images)


def _bad(staged: Staged | None, err: Exception, code: str, hint: str = "") -> BadInput:
    message = str(err) if staged is None else staged.explain(str(err))
    return BadInput(message + (f" {hint}" if hint else ""), code)


def check_raster(bundle: ModelBundle, path: Path, label: str, max_pixels: int) -> RasterProfile:
    """Check an uploaded raster against the limits and the model's bands.

    Raises:
        BadInput: Unreadable/corrupt raster (422) or band count mismatch (422).
        TooLarge: More pixels than ``max_pixels`` (413).
    """
    try:
        profile = read_profile(path)
    except GeoDataError as err:
        raise BadInput(
            f"{label} cannot be read: {_strip_path(err, path)}. Upload an intact "
            "GeoTIFF, PNG or JPEG",
            "corrupt_raster",
        ) from None
    pixels = profile.width * profile.height
    if pixels > max_pixels:
        raise TooLarge(
            f"{label} has {profile.width}×{profile.height} = {pixels} pixels, more "
            f"than this service's limit of {max_pixels}; split it into smaller rasters",
            "too_many_pixels",
        )
    check_bands(bundle, profile.count, label, path)
    return profile


def check_bands(bundle: ModelBundle, count: int, label: str, path: Path | None = None) -> None:
    """422 unless a raster has the model's band count (the detail lists the bands).

    With ``path``, a last band that the raster declares as alpha (PNG/GeoTIFF exports of
    a rendered map or a screenshot) is named as such, with how to drop it.
    """
    bands = list(bundle.bands)
    if count != len(bands):
        hint = ""
        if path is not None and count == len(bands) + 1 and _last_band_is_alpha(path):
            hint = (
                f"; its band {count} is an alpha (transparency) band, not data: save the "
                f"image without it (e.g. gdal_translate "
                f"{' '.join(f'-b {i + 1}' for i in range(len(bands)))} in.tif out.tif)"
            )
        raise BadInput(
            f"{label} has {count} band(s) but the model expects {len(bands)} "
            f"({', '.join(bands)}){hint}; upload rasters with exactly these bands in this order",
            "band_mismatch",
        )


def _last_band_is_alpha(path: Path) -> bool:
    try:
        with rasterio.open(path) as src:
            return src.colorinterp[-1] == ColorInterp.alpha
    except rasterio.errors.RasterioError:
        return False


def receive_support(
    settings: Settings,
    bundle: ModelBundle,
    steps: int | None,
    images: list[UploadFile],
    masks: list[UploadFile],
    archives: list[UploadFile],
    folder: Path,
) -> Support:
    """Check the step count, stage the uploaded support tiles in ``folder`` and read them.

    Shared by ``POST /v1/adaptations`` and ``POST /v1/segment``.
    """
    if steps is not None and steps > settings.max_steps:
        raise BadInput(
            f"steps={steps} is more than this service allows ({settings.max_steps}); "
            "ask for fewer inner steps",
            "too_many_steps",
        )
    staged = stage_support(
        images,
        masks,
        archives,
        folder / "support",
        max_tiles=settings.max_tiles,
        max_bytes=settings.max_upload_bytes,
    )
    return read_support(
        bundle,
        staged,
        settings.max_tile_pixels,
        settings.max_support_pixels,
        input_pixel_budget(bundle),
    )


def read_support(
    bundle: ModelBundle,
    staged: Staged,
    max_tile_pixels: int,
    max_support_pixels: int,
    pool_pixels: int | None = None,
) -> Support:
    """Read and validate staged support tiles with the geo folder reader.

    Checks, each a 4xx naming the client's file: readable rasters, pixel limit, band
    count, image/mask sizes, mask values within the classes, finite pixel values (NaN or
    infinite values are accepted only where the raster declares nodata), tiles with
    labeled data. Tiles are read one at a time; with ``pool_pixels`` (the adaptation's
    crop-pool budget), each tile larger than the pool is cut at once into the crops the
    adaptation may use (:func:`api.cutting.crops_of_tile`), so memory and storage stay
    bounded whatever the tiles' size.
    """
    model_scheme = bundle.scheme()
    lut: np.ndarray | None = None
    if staged.class_file is not None:
        try:
            scheme = ClassScheme.from_file(staged.class_file)
        except GeoDataError as err:
            bad = _bad(staged, err, "invalid_class_file")
            bad.detail = excerpt(bad.detail, 400)  # never echo a client's file at length
            raise bad from None
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
    total = 0
    too_large: list[str] = []
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
            too_large.append(f"{label} ({profile.width}×{profile.height})")
            continue
        check_bands(bundle, profile.count, f"image {label}", path)
        total += profile.width * profile.height
    if too_large:
        side = int(max_tile_pixels**0.5)
        raise TooLarge(
            f"{len(too_large)} tile(s) have more pixels than the limit of {max_tile_pixels} "
            f"per tile (about {side}×{side}): {', '.join(too_large)}; cut them into smaller "
            "tiles (the service cuts tiles within the limit into crops itself)",
            "too_many_pixels",
        )
    if total > max_support_pixels:
        raise TooLarge(
            f"the support tiles hold {total} pixels in all, more than the limit of "
            f"{max_support_pixels} per adaptation; send fewer or smaller tiles (a few tiles "
            f"of {bundle.tile_size} px are what the model adapts on)",
            "too_many_pixels",
        )
    try:
        region = read_region_folder(staged.folder, scheme, validate=True, cache=False)
    except MaskValueError as err:
        # the classes are the model's (no command-line advice); a zip's class file can
        # name them and add ignore entries
        what = err.kind[:-1]
        message = (
            f"{err.path}: {err.short}. This model's classes are {err.valid}; paint every "
            f"labelled pixel with one of these {err.kind} (or an ignore {what}) and send the "
            "tiles again"
        )
        if str(err.path).endswith(".jpg"):  # staged names carry the sniffed kind
            message += (
                ". This mask is a JPEG: its lossy compression changes the class colours at "
                "every edge; save masks as PNG or GeoTIFF"
            )
        elif staged.class_file is None:  # unlabeled pixels in another colour: a class file
            message += (
                f"; or, if those {err.kind} mean 'unlabeled', send the tiles as one zip "
                "(images/, masks/) with a classes.yaml that lists the model's classes and "
                f"puts those {err.kind} under 'ignore' (docs/api.md, 'Class files')"
            )

        raise BadInput(staged.explain(message), "mask_values") from None
    except GeoDataError as err:
        code = "size_mismatch" if "must match their images" in str(err) else "invalid_tile"
        raise _bad(staged, err, code) from None
    images, masks = [], []
    for i, ref in enumerate(region.tiles):
        sample = region[i]
        mask = sample["mask"].numpy().astype(np.int64)
        if lut is not None:
            mask = lut[np.clip(mask, 0, 255)]
        image_path = next((staged.folder / "images").glob(f"{ref.key}.*"))
        label = staged.names[str(image_path)]
        non_finite = _undeclared_non_finite(image_path)
        if non_finite:
            raise BadInput(
                f"image {label} has {non_finite} pixel(s) that are NaN or "
                "infinite but not marked as nodata; fill them with real values, or declare "
                "them nodata (e.g. a GeoTIFF nodata tag of nan) so that they are ignored",
                "non_finite_pixels",
            )
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
        image = sample["image"].numpy().astype(np.float32)
        if pool_pixels is not None:
            image, mask = crops_of_tile(
                image, mask, int(bundle.tile_size), model_scheme.ignore_index, pool_pixels
            )
        images.append(image)
        masks.append(mask)
    return Support(images, masks, source_pixels=total)


def _undeclared_non_finite(path: Path) -> int:
    """Pixels of a floating-point image that are NaN or infinite but not declared nodata.

    The readers treat such pixels as nodata; a support tile must say so itself (a nodata
    tag), so that a broken export is refused rather than silently learned around.
    """
    with rasterio.open(path) as src:
        if not any(np.dtype(d).kind == "f" for d in src.dtypes):
            return 0
        declared = src.dataset_mask() > 0
        finite = np.isfinite(src.read()).all(axis=0)
    return int((declared & ~finite).sum())


def _strip_path(err: Exception, path: Path) -> str:
    """A data-layer message without the staging path it starts with."""
    return str(err).replace(f"{path}: ", "").replace(str(path), "the file")
