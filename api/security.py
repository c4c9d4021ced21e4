"""API keys: the ``X-API-Key`` header identifies a tenant.

Keys come from ``LANDCOVER_API_KEYS``. Comparisons run in constant time; the database
stores only the SHA-256 of a key (the *owner*), so a leaked database leaks no key. Every
query for adaptations filters on the owner, which is why another key's adaptation answers
404 exactly like one that never existed.

Each key's request rate is bounded (``LANDCOVER_RATE_LIMIT``), and so is each client
address's rate of failed authentications (``LANDCOVER_AUTH_FAILURE_LIMIT``), so neither a
busy client nor a key-guessing one can swamp the service: past the limit, a 429 with
``Retry-After``.
"""

from __future__ import annotations

import hashlib
import hmac
from math import ceil
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from api.errors import ApiError, TooBusy

HEADER = "X-API-Key"

api_key_header = APIKeyHeader(
    name=HEADER,
    auto_error=False,
    description="An API key given by the operator (LANDCOVER_API_KEYS).",
)


def owner_of(key: str) -> str:
    """The owner id stored in the database for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def require_owner(request: Request, key: Annotated[str | None, Depends(api_key_header)]) -> str:
    """Dependency: the owner id of the request's API key, or a 401.

    Raises:
        ApiError: 401 when the header is missing or the key is unknown.
    """
    keys: list[str] = request.app.state.settings.api_keys
    services = request.app.state.services
    if not key:
        _count_failure(services, request)
        raise ApiError(
            401,
            f"missing API key; send it in the {HEADER} header (ask the operator for one)",
            "missing_api_key",
            {"WWW-Authenticate": HEADER},
        )
    given = key.encode("utf-8", "surrogateescape")
    if not any(hmac.compare_digest(given, k.encode("utf-8")) for k in keys):
        _count_failure(services, request)
        raise ApiError(
            401,
            f"unknown API key in the {HEADER} header; check it for typos or ask the "
            "operator for a valid one",
            "invalid_api_key",
            {"WWW-Authenticate": HEADER},
        )
    owner = owner_of(key)
    wait = services.rates.hit(owner)
    if wait is not None:
        raise TooBusy(
            f"this API key sent more requests than this service allows "
            f"({services.rates.describe()}); retry after {wait:.0f} s",
            retry_after_s=ceil(wait),
            code="rate_limited",
        )
    return owner


def _count_failure(services: Any, request: Request) -> None:
    """Count a failed authentication of the client's address; 429 past the limit."""
    address = request.client.host if request.client else "unknown"
    wait = services.auth_failures.hit(address)
    if wait is not None:
        raise TooBusy(
            f"too many requests with a missing or unknown API key from this address "
            f"({services.auth_failures.describe()}); retry after {wait:.0f} s with a valid key",
            retry_after_s=ceil(wait),
            code="rate_limited",
        )


Owner = Annotated[str, Depends(require_owner)]
