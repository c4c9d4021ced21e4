"""``/v1/adaptations``: adapt a base model to labeled tiles (a job), poll it, predict, delete.

An adaptation is validated completely while the request is open (tiles readable, bands and
classes as the model expects, limits): a rejected upload leaves no row and no file. The
accepted support set is written atomically to storage, then the row is committed as
``queued`` and the job runner picks it up.
"""

from __future__ import annotations

import hashlib
import pathlib
import re
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Header, Path, Query, Response, UploadFile
from fastapi.responses import FileResponse
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from api.compute import adapt_gflop
from api.db import session_scope
from api.deps import Db, Services, Svc
from api.engine import media
from api.errors import ApiError, BadInput, Conflict, NotFound, TooBusy, TooLarge
from api.models import ACTIVE, Adaptation, JobStatus
from api.predicting import predict_file, stage_raster
from api.schemas import EXAMPLE_MODEL, AdaptationList, AdaptationOut, error_responses
from api.security import Owner
from api.validation import Support, receive_support
from landcover.inference.adapt import input_pixel_budget
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
        examples=[EXAMPLE_MODEL],
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


def stored_bundle(services: Services, row: Adaptation) -> pathlib.Path:
    """The adapted bundle of a done adaptation ``row`` in the shared store.

    Raises:
        ApiError: 410 ``weights_missing`` when the file is gone from storage.
    """
    path = services.store.bundle_path(row.id)
    if not path.is_file():
        raise ApiError(
            410,
            f"the adapted weights of adaptation {row.id} are gone from storage; delete it and "
            "create the adaptation again",
            "weights_missing",
        )
    return path


def read_owned(services: Services, owner: str, adaptation_id: str) -> Adaptation:
    """:func:`owned` in a short session of its own (no connection kept afterwards)."""
    with session_scope(services.sessions) as db:
        return owned(db, owner, adaptation_id)


def fingerprint(model: str, steps: int | None, fields: dict[str, list[UploadFile]]) -> str:
    """SHA-256 of what a creation request asks for: model, steps, every file and its name.

    An ``Idempotency-Key`` is bound to the fingerprint of its first request, so a retry is
    recognised as the same request and a different request under a reused key is not.
    """
    digest = hashlib.sha256(f"{model}\0{steps}\0".encode())
    for name, files in fields.items():
        for upload in files:
            digest.update(f"{name}\0{upload.filename}\0".encode("utf-8", "surrogateescape"))
            upload.file.seek(0)
            for chunk in iter(lambda f=upload.file: f.read(1024 * 1024), b""):
                digest.update(chunk)
            upload.file.seek(0)
            digest.update(b"\0")
    return digest.hexdigest()


def replay(services: Services, owner: str, key: str, request_hash: str) -> AdaptationOut | None:
    """The adaptation first created under ``key``, or ``None``; 422 if the body differs."""
    with session_scope(services.sessions) as db:
        existing = db.scalar(
            select(Adaptation).where(Adaptation.owner == owner, Adaptation.idempotency_key == key)
        )
    if existing is None:
        return None
    if existing.request_hash is not None and existing.request_hash != request_hash:
        raise BadInput(
            f"Idempotency-Key {key[:128]!r} was first used for a different request "
            f"(adaptation {existing.id}); a retry must send the same model, steps and files. "
            "Use a new key for a new adaptation",
            "idempotency_key_reused",
        )
    return AdaptationOut.from_row(existing)


def check_adapt_cost(services: Services, model: str, support: Support, steps: int | None) -> None:
    """413 when the adaptation would cost more compute than this service allows."""
    bundle = services.engine.base(model)
    pixels = support.pixels
    n = steps if steps is not None else int(bundle.inner_steps or 0)
    pool = input_pixel_budget(bundle)
    cost = adapt_gflop(pixels, n, services.engine.flops_per_pixel(model), pool)
    limit = services.settings.max_adapt_gflop
    if cost > limit:
        advice = (
            "ask for fewer steps (more or larger tiles cost no more: the adaptation works "
            f"on at most {pool} pixels of crops)"
            if pixels >= pool
            else "send fewer or smaller tiles, or ask for fewer steps"
        )
        raise TooLarge(
            f"this adaptation would cost about {cost:.0f} GFLOP ({n} steps on "
            f"{min(pixels, pool)} of the {pixels} support pixels with model {model!r}), more "
            f"than this service's limit of {limit:.0f} GFLOP; {advice}",
            "too_costly",
        )


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
    responses={202: {"links": CREATED_LINKS}, **error_responses(400, 401, 413, 415, 422, 429, 503)},
)
def create_adaptation(
    owner: Owner,
    services: Svc,
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
            description="Retries with the same key and the same request return the first "
            "adaptation; the same key with a different request is a 422.",
        ),
    ] = None,
) -> AdaptationOut:
    """Upload 1..N labeled tiles and start adapting ``model`` to them.

    Returns ``202`` with the adaptation's id; poll ``GET /v1/adaptations/{id}`` until
    ``status`` is ``done`` (or ``failed``, with a reason).
    """
    services.require_usable()
    request_hash = fingerprint(model, steps, {"images": images, "masks": masks, "archive": archive})
    if idempotency_key:
        first = replay(services, owner, idempotency_key, request_hash)
        if first is not None:
            return first
    settings = services.settings
    with session_scope(services.sessions) as db:
        check_capacity(services, db, owner)
    bundle = base_model(services, model)
    with services.store.staging() as folder:
        support = receive_support(settings, bundle, steps, images, masks, archive, folder)
    check_adapt_cost(services, model, support, steps)
    adaptation_id = uuid.uuid4().hex
    with services.submit_lock:
        with session_scope(services.sessions) as db:
            check_capacity(services, db, owner)
        services.store.save_support(adaptation_id, support.images, support.masks)
        row = Adaptation(
            id=adaptation_id,
            owner=owner,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            model=model,
            status=JobStatus.queued.value,
            tiles=len(support.images),
            steps=steps,
            attempts=0,
            info={},
        )
        try:
            with session_scope(services.sessions) as db:
                db.add(row)
        except IntegrityError:
            services.store.delete(adaptation_id)
            first = replay(services, owner, idempotency_key or "", request_hash)
            if first is None:
                raise
            return first
        except BaseException:
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
        **error_responses(400, 401, 404, 409, 410, 413, 415, 422, 429, 503),
    },
)
def predict(
    owner: Owner,
    services: Svc,
    adaptation_id: AdaptationId,
    raster: Annotated[UploadFile, File(description="Raster to segment (GeoTIFF, PNG, JPEG).")],
    format: FormatQuery = "geotiff",
) -> FileResponse:
    """Segment ``raster`` with the adapted model; the output streams back from disk.

    No database connection is held while the request waits for a slot or predicts.
    """
    services.require_usable()
    row = read_owned(services, owner, adaptation_id)
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
    path = stored_bundle(services, row)
    per_pixel = (
        services.engine.flops_per_pixel(row.model) if row.model in services.engine.names() else None
    )
    with services.store.staging() as folder:
        try:
            predictor = services.engine.cached_predictor(row.id, path)
        except BundleError as err:
            raise ApiError(
                410,
                f"the stored weights of adaptation {row.id} cannot be read ({err}); delete it "
                "and create the adaptation again",
                "weights_missing",
            ) from None
        src, label = stage_raster(
            services,
            predictor.bundle,
            raster,
            folder,
            services.settings.max_raster_pixels,
            per_pixel,
        )
        with services.slots.take("predictions", owner):
            out = predict_file(services, predictor, src, label, format)
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
            "description": "onnx: ONNX model with Deepness metadata (input: raw bands / 255 "
            "standardised with the metadata's standardization_mean / standardization_std, as "
            "Deepness >= 0.6 feeds it; output class probabilities); bundle: the landcover "
            "model bundle (safetensors).",
            "content": {"application/octet-stream": {}},
        },
        **error_responses(401, 404, 409, 410, 422),
    },
)
def download_model(
    owner: Owner,
    services: Svc,
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

    row = read_owned(services, owner, adaptation_id)  # no connection held during the export
    if row.status != JobStatus.done.value:
        raise Conflict(
            f"adaptation {row.id} is {row.status}, not done; poll GET /v1/adaptations/{row.id} "
            "until its status is 'done', then download the model",
            "adaptation_not_done",
        )
    path = stored_bundle(services, row)
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
