"""``GET /health`` (liveness) and ``GET /ready`` (database, shared storage, a base model).

Neither needs an API key, so that orchestrators (Docker, Kubernetes) can probe them.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import Svc
from api.schemas import Health, Ready

router = APIRouter(tags=["health"])

_READY_THREADS: anyio.CapacityLimiter | None = None


def _ready_threads() -> anyio.CapacityLimiter:
    """Threads for readiness probes, apart from the request handlers' pool."""
    global _READY_THREADS
    if _READY_THREADS is None:
        _READY_THREADS = anyio.CapacityLimiter(4)
    return _READY_THREADS


@router.get("/health", summary="Liveness: the process answers")
async def health() -> Health:
    """Always ``{"status": "ok"}`` while the process serves requests."""
    return Health()


@router.get(
    "/ready",
    summary="Readiness: database reachable, shared storage in place, a base model loaded",
    response_model=Ready,
    responses={503: {"model": Ready, "description": "Not ready; `problems` says why."}},
)
async def ready(services: Svc) -> JSONResponse:
    """``200`` when the service can adapt and predict, else ``503`` with the problems.

    The database is pinged over a connection of its own, in a small thread pool of its
    own, so ``/ready`` answers quickly however busy the request handlers are.
    """
    blocking = await anyio.to_thread.run_sync(services.problems, limiter=_ready_threads())
    db_ok = not any("database" in p for p in blocking)
    names = services.engine.names()
    problems = blocking + services.engine.problems()  # a broken extra bundle is not blocking
    body = Ready(
        status="ready" if not blocking and names else "not_ready",
        database=db_ok,
        models=names,
        problems=problems,
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ready" else 503)
