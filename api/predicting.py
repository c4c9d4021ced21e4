"""Segmenting an uploaded raster: stage it, check it, predict into a file to stream back.

Shared by ``POST /v1/adaptations/{id}/predict`` and ``POST /v1/segment``. The upload is
copied under a service-made name (content sniffed), checked against the model and the
pixel limit, then segmented by the engine into a scratch file of the staging area that the
route streams back and deletes afterwards.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import UploadFile
from rasterio.errors import RasterioIOError

from api.deps import Services
from api.engine import Format, media
from api.errors import BadInput
from api.uploads import RASTER_KINDS, save_upload, shown
from api.validation import check_raster
from landcover.geo.errors import GeoDataError
from landcover.inference.bundle import ModelBundle
from landcover.inference.predict import Predictor


def stage_raster(
    services: Services, bundle: ModelBundle, raster: UploadFile, folder: Path, max_pixels: int
) -> tuple[Path, str]:
    """Save an uploaded raster under a service-made name and check it (bands, pixels).

    Returns:
        The staged path and the label naming the client's file in messages.
    """
    src = save_upload(raster, folder / "raster", RASTER_KINDS)
    label = f"raster {shown(raster.filename)}"
    check_raster(bundle, src, label, max_pixels)
    return src, label


def predict_file(
    services: Services, predictor: Predictor, src: Path, label: str, fmt: Format
) -> Path:
    """Segment a staged raster into a scratch file (the caller streams, then deletes it)."""
    out = services.store.scratch_file(media(fmt)[1])
    try:
        services.engine.predict(predictor, src, out, fmt)
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


def run_prediction(
    services: Services, predictor: Predictor, raster: UploadFile, fmt: Format, max_pixels: int
) -> Path:
    """Stage, check and segment an uploaded raster; returns the output file."""
    with services.store.staging() as folder:
        src, label = stage_raster(services, predictor.bundle, raster, folder, max_pixels)
        return predict_file(services, predictor, src, label, fmt)
