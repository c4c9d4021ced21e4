"""Request and response bodies of the API (pydantic), with the examples shown at ``/docs``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.jobs import aware
from api.models import Adaptation

_ID_EXAMPLE = "5f0c6a1e9b7d4c2a8e3f1b0d7c6a5e4f"

#: Model name in the examples below; the served schema shows a model the server has
#: instead (:func:`api.app.create_app` substitutes it), so examples never name a model
#: that does not exist.
EXAMPLE_MODEL = "synthetic-mamlpp"


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    """Readiness: the database answers and at least one base model loads."""

    status: Literal["ready", "not_ready"]
    database: bool = Field(description="The database answered a query.")
    models: list[str] = Field(description="Base models that loaded.")
    problems: list[str] = Field(default_factory=list, description="What is not ready, and why.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "database": True,
                    "models": [EXAMPLE_MODEL],
                    "problems": [],
                }
            ]
        }
    )


class ClassInfo(BaseModel):
    """One land-cover class of a model."""

    index: int = Field(description="Class index in predicted maps (GeoTIFF pixel value).")
    name: str
    value: int | None = Field(None, description="Raw mask value of the class, if value-coded.")
    color: tuple[int, int, int] = Field(description="Display colour (RGB), also in the maps.")


class ModelInfo(BaseModel):
    """A base model bundle that adaptations start from."""

    name: str = Field(description="Name to pass as 'model' when adapting.")
    bands: list[str] = Field(description="Input bands, in order; uploads need this many.")
    classes: list[ClassInfo]
    ignore_index: int = Field(description="Mask class index meaning 'unlabeled'.")
    mask_values: str = Field(description="Raw mask values the model accepts, in words.")
    tile_size: int = Field(description="Tile size the model was meta-trained on (pixels).")
    inner_steps: int = Field(description="Default number of adaptation steps.")
    learner: str
    arch: str
    version: str = Field(description="landcover version that wrote the bundle.")
    flop_per_pixel: float = Field(
        description="Floating-point operations of one forward pass per pixel; a prediction "
        "costs pixels × this, the unit of the service's compute limits."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": EXAMPLE_MODEL,
                    "bands": ["B02", "B03", "B04", "B08"],
                    "classes": [
                        {"index": 0, "name": "water", "value": 1, "color": [0, 0, 255]},
                        {"index": 1, "name": "forest", "value": 2, "color": [0, 128, 0]},
                    ],
                    "ignore_index": 255,
                    "mask_values": "1 (water), 2 (forest), 0 (ignore)",
                    "tile_size": 128,
                    "inner_steps": 5,
                    "learner": "mamlpp",
                    "arch": "small_unet",
                    "version": "0.1.0",
                    "flop_per_pixel": 81920.0,
                }
            ]
        }
    )


class ServiceLimits(BaseModel):
    """The limits this service puts on inputs (what a client should check before sending)."""

    max_upload_bytes: int = Field(description="Largest request body, in bytes.")
    max_tile_pixels: int = Field(
        description="Largest support tile (width × height); larger tiles get a 413. The "
        "service cuts each tile into the crops adaptation uses."
    )
    max_support_pixels: int = Field(description="Most pixels of all support tiles together.")
    max_tiles: int = Field(description="Most labeled tiles (image + mask pairs) per adaptation.")
    max_steps: int = Field(description="Most inner steps an adaptation may ask for.")
    max_raster_pixels: int = Field(description="Largest raster to predict (width × height).")
    max_predict_gflop: float = Field(
        description="Most compute one prediction may cost (pixels × the model's "
        "flop_per_pixel / 1e9)."
    )
    max_adapt_gflop: float = Field(description="Most compute one adaptation may cost.")
    formats: list[str] = Field(description="File types accepted for tiles and rasters.")


class Timings(BaseModel):
    """Seconds spent in each phase of an adaptation."""

    queued_s: float | None = Field(None, description="From submission to start.")
    adapt_s: float | None = Field(None, description="Adaptation itself (inner loop + scoring).")
    total_s: float | None = Field(None, description="From submission to the end.")


class AdaptationOut(BaseModel):
    """State of an adaptation job."""

    id: str
    model: str
    status: Literal["queued", "running", "done", "failed"]
    reason: str | None = Field(None, description="Why it failed, and what to do.")
    tiles: int = Field(description="Labeled tiles in the support set.")
    steps: int | None = Field(None, description="Inner steps requested (None: model default).")
    support_miou_before: float | None = Field(
        None, description="mIoU of the base model on the support tiles."
    )
    support_miou_after: float | None = Field(
        None, description="mIoU of the adapted model on the support tiles."
    )
    timings: Timings
    report: dict[str, Any] | None = Field(
        None,
        description="Adaptation report (support mIoU before/after, steps kept/tried, held-out "
        "tiles); null until the job is done.",
    )
    attempts: int = Field(0, description="Runs started (a replica lost mid-job costs one).")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    links: dict[str, str] = Field(description="Related endpoints.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _ID_EXAMPLE,
                    "model": EXAMPLE_MODEL,
                    "status": "done",
                    "reason": None,
                    "tiles": 5,
                    "steps": 10,
                    "support_miou_before": 0.31,
                    "support_miou_after": 0.74,
                    "report": {
                        "support_miou_before": 0.31,
                        "support_miou_after": 0.74,
                        "steps_kept": 8,
                        "steps_tried": 10,
                        "held_out_tiles": 1,
                    },
                    "timings": {"queued_s": 0.02, "adapt_s": 1.9, "total_s": 1.95},
                    "created_at": "2026-11-26T08:00:00Z",
                    "started_at": "2026-11-26T08:00:00.02Z",
                    "finished_at": "2026-11-26T08:00:01.95Z",
                    "links": {
                        "self": f"/v1/adaptations/{_ID_EXAMPLE}",
                        "predict": f"/v1/adaptations/{_ID_EXAMPLE}/predict",
                    },
                }
            ]
        }
    )

    @classmethod
    def from_row(cls, row: Adaptation) -> AdaptationOut:
        """Build the response of one database row."""
        created, started, finished = (
            aware(row.created_at),
            aware(row.started_at),
            aware(row.finished_at),
        )
        assert created is not None

        def secs(a: datetime | None, b: datetime | None) -> float | None:
            return None if a is None or b is None else round((b - a).total_seconds(), 4)

        return cls(
            id=row.id,
            model=row.model,
            status=row.status,  # type: ignore[arg-type]
            reason=row.reason,
            tiles=row.tiles,
            steps=row.steps,
            support_miou_before=row.support_miou_before,
            support_miou_after=row.support_miou_after,
            timings=Timings(
                queued_s=secs(created, started),
                adapt_s=row.adapt_seconds,
                total_s=secs(created, finished),
            ),
            report=row.report,
            attempts=row.attempts or 0,
            created_at=created,
            started_at=started,
            finished_at=finished,
            links={
                "self": f"/v1/adaptations/{row.id}",
                "predict": f"/v1/adaptations/{row.id}/predict",
            },
        )


class AdaptationList(BaseModel):
    """The caller's adaptations, newest first."""

    items: list[AdaptationOut]


class ErrorOut(BaseModel):
    """Body of every error response."""

    detail: str = Field(description="What was wrong and what to do.")
    code: str = Field(description="Stable machine-readable error code.")

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "detail": f"image 'a.tif' has 3 bands but model '{EXAMPLE_MODEL}' expects "
                    "4 (B02, B03, B04, B08); upload rasters with those bands in that order",
                    "code": "band_mismatch",
                }
            ]
        },
    )


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error status codes (429 and 503 always)."""
    text = {
        400: "Malformed request.",
        401: "Missing or unknown API key.",
        404: "No such adaptation for this API key (or no such model).",
        409: "The adaptation is not done yet (or failed).",
        410: "The adaptation's stored weights are gone; create it again.",
        413: "Upload beyond a byte, pixel, part-count or compute limit.",
        415: "Upload content is not GeoTIFF/PNG/JPEG (or ZIP where a zip is expected).",
        422: "Invalid input: the detail says what was wrong and what to do.",
        429: "Too many requests, active jobs or predictions; retry after Retry-After seconds.",
        503: "Overloaded or database unavailable; retry after Retry-After seconds.",
    }
    every = sorted(set(codes) | {429, 503})  # rate limit and overload apply to every call
    return {c: {"model": ErrorOut, "description": text.get(c, "Error.")} for c in every}
