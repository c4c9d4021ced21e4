"""``GET /v1/limits``: the service's input limits, for clients to check before uploading.

The analysts' page reads them to name every too-large file at once, before any upload or
painting, and to bound its inputs (the steps field's maximum is ``max_steps``).
"""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Svc
from api.schemas import ServiceLimits, error_responses
from api.security import Owner

router = APIRouter(prefix="/v1/limits", tags=["models"])

#: File types the service reads for tiles and rasters (content is sniffed, not trusted).
FORMATS = ["GeoTIFF", "PNG", "JPEG"]


@router.get("", summary="The service's input limits", responses=error_responses(401))
def get_limits(_: Owner, services: Svc) -> ServiceLimits:
    """Upload bytes, pixels per tile and raster, tiles, steps and compute limits."""
    s = services.settings
    return ServiceLimits(
        max_upload_bytes=s.max_upload_bytes,
        max_tile_pixels=s.max_tile_pixels,
        max_support_pixels=s.max_support_pixels,
        max_tiles=s.max_tiles,
        max_steps=s.max_steps,
        max_raster_pixels=s.max_raster_pixels,
        max_predict_gflop=s.max_predict_gflop,
        max_adapt_gflop=s.max_adapt_gflop,
        formats=FORMATS,
    )
