"""``GET /health`` (liveness) and ``GET /ready`` (database reachable, a base model loaded).

Neither needs an API key, so that orchestrators (Docker, Kubernetes) can probe them.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.db import ping
from api.deps import Svc
from api.schemas import Health, Ready

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process answers")
async def health() -> Health:
    """Always ``{"status": "ok"}`` while the process serves requests."""
    return Health()


@router.get(
    "/ready",
    summary="Readiness: database reachable and at least one base model loaded",
    response_model=Ready,
    responses={503: {"model": Ready, "description": "Not ready; `problems` says why."}},
)
def ready(services: Svc) -> JSONResponse:
    """``200`` when the service can adapt and predict, else ``503`` with the problems."""
    db_ok = ping(services.db)
    problems = [] if db_ok else ["the database does not answer; check LANDCOVER_DATABASE_URL"]
    names = services.engine.names()
    problems += services.engine.problems()
    body = Ready(
        status="ready" if db_ok and names else "not_ready",
        database=db_ok,
        models=names,
        problems=problems,
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ready" else 503)
