"""Segmenting an uploaded raster: stage it, check it, predict into a file to stream back.

Shared by ``POST /v1/adaptations/{id}/predict`` and ``POST /v1/segment``. The upload is
copied under a service-made name (content sniffed), checked against the model and the
pixel and compute limits, then segmented by the engine into a scratch file of the staging
area that the route streams back and deletes afterwards.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import UploadFile
from rasterio.errors import RasterioIOError

from api.compute import TimeLimitExceeded, flops_per_pixel, predict_gflop, time_limit
from api.deps import Services
from api.engine import Format, media
from api.errors import BadInput, TooLarge, Unavailable
from api.uploads import RASTER_KINDS, save_upload, shown
from api.validation import check_raster
from landcover.geo.errors import GeoDataError
from landcover.geo.raster import read_profile
from landcover.inference.bundle import ModelBundle
from landcover.inference.predict import Predictor


def stage_raster(
    services: Services,
    bundle: ModelBundle,
    raster: UploadFile,
    folder: Path,
    max_pixels: int,
    flop_per_pixel: float | None = None,
) -> tuple[Path, str]:
    """Save an uploaded raster under a service-made name and check it (bands, pixels, cost).

    Returns:
        The staged path and the label naming the client's file in messages.

    Raises:
        TooLarge: More pixels than ``max_pixels``, or a prediction costing more than
            ``max_predict_gflop`` (413).
    """
    src = save_upload(raster, folder / "raster", RASTER_KINDS)
    label = f"raster {shown(raster.filename)}"
    profile = check_raster(bundle, src, label, max_pixels)
    per_pixel = flop_per_pixel if flop_per_pixel is not None else flops_per_pixel(bundle)
    pixels = profile.width * profile.height
    cost, limit = predict_gflop(pixels, per_pixel), services.settings.max_predict_gflop
    if cost > limit:
        side = int((limit * 1e9 / per_pixel) ** 0.5)
        raise TooLarge(
            f"{label} has {profile.width}×{profile.height} pixels; segmenting it would cost "
            f"about {cost:.0f} GFLOP with this model, more than this service's limit of "
            f"{limit:.0f} GFLOP per request; split it into rasters of at most about "
            f"{side}×{side} pixels",
            "too_costly",
        )
    return src, label


def predict_file(
    services: Services, predictor: Predictor, src: Path, label: str, fmt: Format
) -> Path:
    """Segment a staged raster into a scratch file (the caller streams, then deletes it).

    Raises:
        BadInput: The raster cannot be segmented, or fits in one block of the network's size
            divisor (its batch statistics would have a single value per channel) (422).
        Unavailable: The prediction ran past ``predict_time_limit_s`` (503; the service is
            overloaded, the cost limit keeps a request's own work shorter).
    """
    profile = read_profile(src)
    d = predictor.size_divisor
    if profile.width <= d and profile.height <= d:
        raise BadInput(
            f"{label} is {profile.width}×{profile.height} px, too small for this model: it "
            f"maps rasters more than {d} px wide or high; send a larger raster",
            "invalid_raster",
        )
    out = services.store.scratch_file(media(fmt)[1])
    limit = services.settings.predict_time_limit_s
    try:
        with time_limit(limit, f"the prediction ran past this service's limit of {limit:g} s"):
            services.engine.predict(predictor, src, out, fmt)
    except TimeLimitExceeded as err:
        out.unlink(missing_ok=True)
        raise Unavailable(
            f"{label}: {err} (the service is busy); retry later or send a smaller raster",
            "time_limit",
            retry_after_s=30,
        ) from None
    except (ValueError, RasterioIOError) as err:
        out.unlink(missing_ok=True)
        corrupt = isinstance(err, GeoDataError | RasterioIOError)
        message = str(err).replace(f"{src}: ", "").replace(str(src), "the raster")
        raise BadInput(
            f"{label} could not be segmented: {message}; upload an intact raster",
            "corrupt_raster" if corrupt else "invalid_raster",
        ) from None
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out
