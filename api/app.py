"""The app factory: ``create_app(settings)`` wires storage, database, models and jobs.

Run it with ``landcover serve`` (uvicorn), or ``uvicorn api.app:create_app --factory``.
Every endpoint lives under ``/v1`` except the health probes; OpenAPI documentation with
examples is served at ``/docs`` (Swagger UI) and ``/openapi.json``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import select

import landcover
from api.db import make_engine, make_sessionmaker, session_scope
from api.deps import Services
from api.engine import ModelEngine
from api.errors import ApiError, install_handlers
from api.jobs import JobError, JobRunner, Work
from api.limits import BodyLimitMiddleware, Slots
from api.models import Adaptation
from api.routes import adaptations, health, models, segment
from api.settings import Settings
from api.store import Store, atomic_path
from api.validation import Support

log = logging.getLogger("landcover.api")

DESCRIPTION = """
Adapt a land-cover segmentation model to a new region from a few labeled tiles, then map
rasters of that region.

1. `GET /v1/models`: pick a base model; note its bands and class values.
2. `POST /v1/adaptations` with labeled tiles (image + mask pairs, or one zip in the users'
   folder format) → `202` and an id.
3. Poll `GET /v1/adaptations/{id}` until `status` is `done` (support mIoU before/after).
4. `POST /v1/adaptations/{id}/predict` with a raster → GeoTIFF (or `?format=png|geojson`).

Every call except `/health` and `/ready` needs an `X-API-Key` header. Errors are
`{"detail": ..., "code": ...}`; the detail says what was wrong and what to do.
"""


def make_work(services: Services) -> Work:
    """The job body: adapt a queued adaptation's stored support set and save the result."""

    def work(adaptation_id: str) -> dict[str, object]:
        with session_scope(services.sessions) as s:
            row = s.get(Adaptation, adaptation_id)
            if row is None:
                raise JobError("the adaptation was deleted before it ran")
            model, steps = row.model, row.steps
        try:
            bundle = services.engine.base(model)
        except ApiError:
            raise JobError(
                f"base model {model!r} is no longer served; create the adaptation again "
                f"with one of {services.engine.names()}"
            ) from None
        store = services.store
        try:
            images, masks = store.load_support(adaptation_id)
        except FileNotFoundError:
            raise JobError(
                "the stored support tiles are missing (storage was cleaned); create the "
                "adaptation again"
            ) from None
        try:
            outcome = services.engine.adapt(bundle, Support(images, masks), steps)
        except ApiError as err:
            raise JobError(err.detail) from None
        with atomic_path(store.bundle_path(adaptation_id)) as tmp:
            services.engine.save_bundle(outcome.bundle, tmp)
        store.support_path(adaptation_id).unlink(missing_ok=True)
        return {
            "support_miou_before": outcome.miou_before,
            "support_miou_after": outcome.miou_after,
            "adapt_seconds": round(outcome.seconds, 4),
            "info": {"report": outcome.report},
        }

    return work


def build_services(settings: Settings, engine: ModelEngine | None = None) -> Services:
    """Create storage, database, model engine and job runner (not started)."""
    store = Store(settings.data_dir)
    db = make_engine(settings.db_url)
    sessions = make_sessionmaker(db)
    engine = engine or ModelEngine(settings.models_dir, window=settings.window)
    services = Services(
        settings=settings,
        db=db,
        sessions=sessions,
        store=store,
        engine=engine,
        runner=None,  # type: ignore[arg-type]  (set just below; it needs `services`)
        slots=Slots(settings.predict_concurrency, settings.predict_wait_s),
        submit_lock=threading.Lock(),
    )
    services.runner = JobRunner(
        sessions,
        make_work(services),
        workers=settings.job_workers,
        poll_s=settings.poll_s,
        heartbeat_s=settings.heartbeat_s,
        stale_after_s=settings.stale_after_s,
        discard=store.delete,
    )
    return services


def _clean_orphans(services: Services) -> None:
    """Remove storage of adaptations without a row (crash between write and commit)."""
    with session_scope(services.sessions) as s:
        known = set(s.scalars(select(Adaptation.id)).all())
    for orphan in services.store.orphans(known):
        services.store.delete(orphan)
    services.store.sweep_tmp()


def create_app(settings: Settings | None = None, engine: ModelEngine | None = None) -> FastAPI:
    """Build the FastAPI application.

    Args:
        settings: Configuration; read from ``LANDCOVER_*`` environment variables by default.
        engine: Model engine (default: the bundles of ``settings.models_dir``).

    Returns:
        The app; its lifespan loads the models and starts the job runner.
    """
    settings = settings or Settings()
    services = build_services(settings, engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)
        services.engine.load_all()
        _clean_orphans(services)
        services.runner.start()
        if not settings.api_keys:
            log.warning("no API keys configured (LANDCOVER_API_KEYS): every /v1 call gets 401")
        try:
            yield
        finally:
            services.runner.stop()
            services.db.dispose()

    app = FastAPI(
        title="landcover",
        version=landcover.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=lambda route: route.name,  # operationId = function name
    )
    app.state.settings = settings
    app.state.services = services
    install_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    for module in (health, models, adaptations, segment):
        app.include_router(module.router)
    return app
