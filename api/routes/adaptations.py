"""``/v1/adaptations``: adapt a base model to labeled tiles (a job), poll it, predict, delete.

An adaptation is validated completely while the request is open (tiles readable, bands and
classes as the model expects, limits): a rejected upload leaves no row and no file. The
accepted support set is written atomically to storage, then the row is committed as
``queued`` and the job runner picks it up.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Header, Path, Query, Response, UploadFile
from fastapi.responses import FileResponse
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from api.deps import Db, Services, Svc
from api.engine import media
from api.errors import ApiError, BadInput, Conflict, NotFound, TooBusy
from api.models import ACTIVE, Adaptation, JobStatus
from api.predicting import run_prediction
from api.schemas import AdaptationList, AdaptationOut, error_responses
from api.security import Owner
from api.validation import receive_support
from landcover.inference.bundle import ModelBundle
from landcover.inference.errors import BundleError

router = APIRouter(prefix="/v1/adaptations", tags=["adaptations"])

_ID = re.compile(r"^[0-9a-f]{32}$")

ImagesField = Annotated[
    list[UploadFile],
    File(
        default_factory=list,
        description="Image tiles (GeoTIFF, PNG or JPEG), paired with 'masks' by file stem.",
    ),
]
MasksField = Annotated[
    list[UploadFile],
    File(
        default_factory=list,
        description="Mask tiles: one band of the model's class values (or RGB colours).",
    ),
]
ArchiveField = Annotated[
    list[UploadFile],
    File(
        default_factory=list,
        description="Instead of images/masks: one zip in the users' folder format "
        "(images/, masks/, optional classes.yaml|json naming the model's classes).",
    ),
]
ModelField = Annotated[
    str,
    Form(
        max_length=128,
        description="Base model name (GET /v1/models).",
        examples=["synthetic-mamlpp"],
    ),
]
StepsField = Annotated[
    int | None,
    Form(
        ge=1, le=10_000, description="Inner adaptation steps (default: the model's).", examples=[10]
    ),
]
AdaptationId = Annotated[str, Path(max_length=64, description="Adaptation id.")]
FormatQuery = Annotated[
    Literal["geotiff", "png", "geojson"],
    Query(
        description="geotiff: class map with CRS/transform/nodata and colour table; png: "
        "coloured preview; geojson: polygons per class."
    ),
]


#: OpenAPI links from a created adaptation to what can be done with its id.
CREATED_LINKS = {
    name: {"operationId": op, "parameters": {"adaptation_id": "$response.body#/id"}}
    for name, op in (
        ("GetAdaptation", "get_adaptation"),
        ("Predict", "predict"),
        ("DeleteAdaptation", "delete_adaptation"),
    )
}


def owned(db: Session, owner: str, adaptation_id: str) -> Adaptation:
    """The caller's adaptation, or a 404 (also for another key's adaptation)."""
    row = db.get(Adaptation, adaptation_id) if _ID.match(adaptation_id) else None
    if row is None or row.owner != owner:
        raise NotFound(
            f"adaptation {adaptation_id[:64]!r}",
            "check the id returned by POST /v1/adaptations (ids are per API key); "
            "GET /v1/adaptations lists yours",
        )
    return row


def check_capacity(services: Services, db: Session, owner: str) -> None:
    """429 when the caller or the service has too many queued/running adaptations."""
    s = services.settings
    db.rollback()  # end any read transaction: count what is committed now, not a snapshot
    mine = db.scalar(
        select(func.count()).where(Adaptation.owner == owner, Adaptation.status.in_(ACTIVE))
    )
    if (mine or 0) >= s.max_active_jobs_per_key:
        raise TooBusy(
            f"this API key already has {mine} adaptations queued or running (limit "
            f"{s.max_active_jobs_per_key}); wait for some to finish, then retry",
            retry_after_s=10,
        )
    total = db.scalar(select(func.count()).where(Adaptation.status.in_(ACTIVE)))
    if (total or 0) >= s.max_active_jobs:
        raise TooBusy(
            f"the service has {total} adaptations queued or running (limit "
            f"{s.max_active_jobs}); retry in a minute",
            retry_after_s=30,
        )


def base_model(services: Services, name: str) -> ModelBundle:
    """The base bundle named in a form, or a 422 listing the available ones."""
    try:
        return services.engine.base(name)
    except NotFound:
        raise BadInput(
            f"unknown model {name[:128]!r}; choose one of {services.engine.names()} "
            "(GET /v1/models)",
            "unknown_model",
        ) from None


@router.post(
    "",
    status_code=202,
    summary="Adapt a base model to labeled tiles (background job)",
    responses={202: {"links": CREATED_LINKS}, **error_responses(400, 401, 413, 415, 422, 429)},
)
def create_adaptation(
    owner: Owner,
    services: Svc,
    db: Db,
    response: Response,
    model: ModelField,
    images: ImagesField,
    masks: MasksField,
    archive: ArchiveField,
    steps: StepsField = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=128,
            description="Retries with the same key return the first adaptation.",
        ),
    ] = None,
) -> AdaptationOut:
    """Upload 1..N labeled tiles and start adapting ``model`` to them.

    Returns ``202`` with the adaptation's id; poll ``GET /v1/adaptations/{id}`` until
    ``status`` is ``done`` (or ``failed``, with a reason).
    """
    if idempotency_key:
        existing = db.scalar(
            select(Adaptation).where(
                Adaptation.owner == owner, Adaptation.idempotency_key == idempotency_key
            )
        )
        if existing is not None:
            return AdaptationOut.from_row(existing)
    settings = services.settings
    check_capacity(services, db, owner)
    bundle = base_model(services, model)
    with services.store.staging() as folder:
        support = receive_support(settings, bundle, steps, images, masks, archive, folder)
    adaptation_id = uuid.uuid4().hex
    with services.submit_lock:
        check_capacity(services, db, owner)
        services.store.save_support(adaptation_id, support.images, support.masks)
        row = Adaptation(
            id=adaptation_id,
            owner=owner,
            idempotency_key=idempotency_key,
            model=model,
            status=JobStatus.queued.value,
            tiles=len(support.images),
            steps=steps,
            info={},
        )
        try:
            db.add(row)
            db.commit()
        except IntegrityError:
            db.rollback()
            services.store.delete(adaptation_id)
            existing = db.scalar(
                select(Adaptation).where(
                    Adaptation.owner == owner, Adaptation.idempotency_key == idempotency_key
                )
            )
            if existing is None:
                raise
            return AdaptationOut.from_row(existing)
        except BaseException:
            db.rollback()
            services.store.delete(adaptation_id)
            raise
    services.runner.notify()
    response.headers["Location"] = f"/v1/adaptations/{adaptation_id}"
    return AdaptationOut.from_row(row)


@router.get("", summary="List your adaptations", responses=error_responses(401, 422))
def list_adaptations(
    owner: Owner,
    db: Db,
    status: Annotated[
        Literal["queued", "running", "done", "failed"] | None, Query(description="Filter.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AdaptationList:
    """The caller's adaptations, newest first."""
    query = select(Adaptation).where(Adaptation.owner == owner)
    if status is not None:
        query = query.where(Adaptation.status == status)
    rows = db.scalars(query.order_by(Adaptation.created_at.desc()).limit(limit)).all()
    return AdaptationList(items=[AdaptationOut.from_row(r) for r in rows])


@router.get(
    "/{adaptation_id}", summary="Status of an adaptation", responses=error_responses(401, 404, 422)
)
def get_adaptation(owner: Owner, db: Db, adaptation_id: AdaptationId) -> AdaptationOut:
    """Status (queued, running, done, failed with reason), support mIoU, timings."""
    return AdaptationOut.from_row(owned(db, owner, adaptation_id))


@router.delete(
    "/{adaptation_id}",
    status_code=204,
    summary="Delete an adaptation",
    responses=error_responses(401, 404, 422),
)
def delete_adaptation(owner: Owner, services: Svc, db: Db, adaptation_id: AdaptationId) -> Response:
    """Delete the adaptation and its stored weights (a running job's result is discarded)."""
    row = owned(db, owner, adaptation_id)
    db.delete(row)
    db.commit()
    services.engine.forget(adaptation_id)
    services.store.delete(adaptation_id)
    return Response(status_code=204)


@router.post(
    "/{adaptation_id}/predict",
    summary="Segment a raster with an adapted model",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The map: GeoTIFF (default), PNG preview or GeoJSON polygons.",
            "content": {"image/tiff": {}, "image/png": {}, "application/geo+json": {}},
        },
        **error_responses(400, 401, 404, 409, 410, 413, 415, 422, 429),
    },
)
def predict(
    owner: Owner,
    services: Svc,
    db: Db,
    adaptation_id: AdaptationId,
    raster: Annotated[UploadFile, File(description="Raster to segment (GeoTIFF, PNG, JPEG).")],
    format: FormatQuery = "geotiff",
) -> FileResponse:
    """Segment ``raster`` with the adapted model; the output streams back from disk."""
    row = owned(db, owner, adaptation_id)
    if row.status != JobStatus.done.value:
        if row.status == JobStatus.failed.value:
            raise Conflict(
                f"adaptation {row.id} failed ({row.reason}); create a new adaptation",
                "adaptation_failed",
            )
        raise Conflict(
            f"adaptation {row.id} is {row.status}, not done; poll GET /v1/adaptations/{row.id} "
            "until its status is 'done', then predict",
            "adaptation_not_done",
        )
    path = services.store.bundle_path(row.id)
    if not path.is_file():
        raise ApiError(
            410,
            f"the adapted weights of adaptation {row.id} are gone from storage; delete it and "
            "create the adaptation again",
            "weights_missing",
        )
    settings = services.settings
    with services.slots.take("predictions"):
        try:
            predictor = services.engine.cached_predictor(row.id, path)
        except BundleError as err:
            raise ApiError(
                410,
                f"the stored weights of adaptation {row.id} cannot be read ({err}); delete it "
                "and create the adaptation again",
                "weights_missing",
            ) from None
        out = run_prediction(services, predictor, raster, format, settings.max_raster_pixels)
    media_type, suffix = media(format)
    return FileResponse(
        out,
        media_type=media_type,
        filename=f"{row.id}{suffix}",
        background=BackgroundTask(out.unlink, missing_ok=True),
    )


@router.get(
    "/{adaptation_id}/model",
    summary="Download the adapted model (ONNX for QGIS Deepness and ONNX runtimes, or bundle)",
    response_class=FileResponse,
    responses={
        200: {
            "description": "onnx: ONNX model with Deepness metadata (input raw bands / 255, "
            "output class probabilities); bundle: the landcover model bundle (safetensors).",
            "content": {"application/octet-stream": {}},
        },
        **error_responses(401, 404, 409, 410, 422),
    },
)
def download_model(
    owner: Owner,
    services: Svc,
    db: Db,
    adaptation_id: AdaptationId,
    format: Annotated[
        Literal["onnx", "bundle"],
        Query(
            description="onnx (default): for QGIS Deepness / ONNX Runtime; bundle: for "
            "`landcover predict`."
        ),
    ] = "onnx",
) -> FileResponse:
    """The adapted model as a file; the ONNX export is made once and kept with the weights."""
    from landcover.inference.onnx_export import export_onnx

    row = owned(db, owner, adaptation_id)
    if row.status != JobStatus.done.value:
        raise Conflict(
            f"adaptation {row.id} is {row.status}, not done; poll GET /v1/adaptations/{row.id} "
            "until its status is 'done', then download the model",
            "adaptation_not_done",
        )
    path = services.store.bundle_path(row.id)
    if not path.is_file():
        raise ApiError(410, f"the adapted weights of adaptation {row.id} are gone from storage; "
                       "delete it and create the adaptation again", "weights_missing")  # fmt: skip
    if format == "bundle":
        return FileResponse(path, media_type="application/octet-stream",
                            filename=f"{row.id}.bundle")  # fmt: skip
    onnx_path = path.with_suffix(".onnx")
    if not onnx_path.is_file():
        try:
            export_onnx(ModelBundle.load(path), onnx_path)  # atomic: no half-written file
        except BundleError as err:
            raise Conflict(f"adaptation {row.id}'s model cannot be exported as ONNX: {err}",
                           "not_exportable") from None  # fmt: skip
    return FileResponse(onnx_path, media_type="application/octet-stream",
                        filename=f"{row.id}.onnx")  # fmt: skip
