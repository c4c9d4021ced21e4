"""``GET /v1/models``: the base model bundles adaptations start from."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import Svc
from api.schemas import EXAMPLE_MODEL, ModelInfo, error_responses
from api.security import Owner

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", summary="List base models", responses=error_responses(401))
def list_models(_: Owner, services: Svc) -> list[ModelInfo]:
    """Base models with their bands, classes (with colours) and tile size."""
    return [services.engine.info(name) for name in services.engine.names()]


@router.get("/{name}", summary="Describe one base model", responses=error_responses(401, 404, 422))
def get_model(
    _: Owner,
    services: Svc,
    name: Annotated[str, Path(max_length=128, examples=[EXAMPLE_MODEL])],
) -> ModelInfo:
    """One base model, by the name given in ``GET /v1/models``."""
    return services.engine.info(name)
