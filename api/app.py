"""The app factory: ``create_app(settings)`` wires storage, database, models and jobs.

Run it with ``landcover serve`` (uvicorn), or ``uvicorn api.app:create_app --factory``.
Every endpoint lives under ``/v1`` except the health probes; OpenAPI documentation with
examples is served at ``/docs`` (Swagger UI), ``/redoc`` and ``/openapi.json``, the
analysts' page at ``/`` (:mod:`api.routes.web`, from local assets only).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy import select

import landcover
from api.compute import TimeLimitExceeded, time_limit
from api.db import Database, session_scope
from api.deps import Services
from api.engine import ModelEngine
from api.errors import ApiError, OptionsMiddleware, install_handlers
from api.jobs import JobError, JobRunner, Work
from api.limits import BodyLimitMiddleware, RateLimiter, Slots
from api.models import Adaptation
from api.routes import adaptations, health, limits, models, segment, web
from api.schemas import EXAMPLE_MODEL
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
    settings = services.settings

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
        limit = settings.job_time_limit_s
        try:
            with time_limit(
                limit,
                f"the adaptation ran past this service's time limit of {limit:g} s; send "
                "fewer or smaller tiles, or ask for fewer steps",
            ):
                outcome = services.engine.adapt(bundle, Support(images, masks), steps)
        except TimeLimitExceeded as err:
            raise JobError(str(err)) from None
        except ApiError as err:
            raise JobError(err.detail) from None
        with atomic_path(store.bundle_path(adaptation_id)) as tmp:
            services.engine.save_bundle(outcome.bundle, tmp)
        return {
            "support_miou_before": outcome.miou_before,
            "support_miou_after": outcome.miou_after,
            "adapt_seconds": round(outcome.seconds, 4),
            "report": outcome.report,
        }

    return work


def build_services(settings: Settings, engine: ModelEngine | None = None) -> Services:
    """Create storage, database, model engine and job runner (not started)."""
    store = Store(settings.data_dir)
    database = Database(
        settings.db_url, pool_size=settings.db_pool_size, pool_timeout=settings.db_pool_timeout_s
    )
    engine = engine or ModelEngine(settings.models_dir, window=settings.window)
    services = Services(
        settings=settings,
        database=database,
        db=database.engine,
        sessions=database.sessions,
        store=store,
        engine=engine,
        runner=None,  # type: ignore[arg-type]  (set just below; it needs `services`)
        slots=Slots(settings.predict_concurrency, settings.predict_wait_s),
        submit_lock=threading.Lock(),
        rates=RateLimiter(settings.rate_limit),
        auth_failures=RateLimiter(settings.auth_failure_limit),
    )
    services.runner = JobRunner(
        database.sessions,
        make_work(services),
        workers=settings.job_workers,
        poll_s=settings.poll_s,
        heartbeat_s=settings.heartbeat_s,
        stale_after_s=settings.stale_after_s,
        max_attempts=settings.max_attempts,
        skip_locked=database.is_postgres,
        discard=store.delete,
        finished=lambda job_id: store.support_path(job_id).unlink(missing_ok=True),
        ready=services.usable,
    )
    return services


def _clean_orphans(services: Services) -> None:
    """Remove storage of adaptations without a row (crash between write and commit)."""
    with session_scope(services.sessions) as s:
        known = set(s.scalars(select(Adaptation.id)).all())
    for orphan in services.store.orphans(known):
        services.store.delete(orphan)
    services.store.sweep_tmp()


def _with_served_models(schema: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The OpenAPI schema with the placeholder model name replaced by a served model."""
    served = names[0] if names else "your-model"

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str):
            return node.replace(EXAMPLE_MODEL, served)
        return node

    return walk(schema)


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
        if services.usable():
            _clean_orphans(services)
        else:
            log.error("starting without a usable database or storage: %s", services.problems())
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
        docs_url=None,  # /docs and /redoc come from api.routes.web, on local assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.services = services
    install_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(OptionsMiddleware)
    for module in (health, models, limits, adaptations, segment):
        app.include_router(module.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = _with_served_models(schema, services.engine.names())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    web.install(app)  # the analysts' page at /, offline /docs and /redoc
    return app
