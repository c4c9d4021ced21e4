"""``POST /v1/segment``: support tiles and one query raster in a single synchronous call.

For small jobs: the base model is adapted in the request (nothing is stored) and the map
of the query raster comes back directly. The query raster is limited to
``segment_max_pixels``; larger work goes through ``/v1/adaptations``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from api.compute import TimeLimitExceeded, time_limit
from api.deps import Svc
from api.engine import media
from api.errors import Unavailable
from api.predicting import predict_file, stage_raster
from api.routes.adaptations import (
    ArchiveField,
    FormatQuery,
    ImagesField,
    MasksField,
    ModelField,
    StepsField,
    base_model,
    check_adapt_cost,
)
from api.schemas import error_responses
from api.security import Owner
from api.validation import receive_support

router = APIRouter(prefix="/v1", tags=["segment"])


@router.post(
    "/segment",
    summary="Adapt and segment in one call (small jobs)",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The map of the query raster (GeoTIFF, PNG preview or GeoJSON).",
            "content": {"image/tiff": {}, "image/png": {}, "application/geo+json": {}},
        },
        **error_responses(400, 401, 413, 415, 422, 429, 503),
    },
)
def segment(
    owner: Owner,
    services: Svc,
    model: ModelField,
    raster: Annotated[UploadFile, File(description="Query raster to segment.")],
    images: ImagesField,
    masks: MasksField,
    archive: ArchiveField,
    steps: StepsField = None,
    format: FormatQuery = "geotiff",
) -> FileResponse:
    """Adapt ``model`` to the support tiles, then segment ``raster`` with it."""
    settings = services.settings
    bundle = base_model(services, model)
    with services.store.staging() as folder:
        support = receive_support(settings, bundle, steps, images, masks, archive, folder)
        check_adapt_cost(services, model, support, steps)
        src, label = stage_raster(services, bundle, raster, folder, settings.segment_max_pixels,
                                  services.engine.flops_per_pixel(model))  # fmt: skip
        with services.slots.take("predictions or segmentations", owner):
            limit = settings.predict_time_limit_s
            try:
                with time_limit(limit, f"adapting ran past this service's limit of {limit:g} s"):
                    outcome = services.engine.adapt(bundle, support, steps)
            except TimeLimitExceeded as err:
                raise Unavailable(f"{err} (the service is busy); retry later or send fewer "
                                  "tiles", "time_limit", retry_after_s=30) from None  # fmt: skip
            predictor = services.engine.predictor(outcome.bundle)
            out = predict_file(services, predictor, src, label, format)
    media_type, suffix = media(format)
    return FileResponse(
        out,
        media_type=media_type,
        filename=f"segment{suffix}",
        headers={
            "X-Support-mIoU-Before": f"{outcome.miou_before:.4f}",
            "X-Support-mIoU-After": f"{outcome.miou_after:.4f}",
        },
        background=BackgroundTask(out.unlink, missing_ok=True),
    )
