"""API keys: the ``X-API-Key`` header identifies a tenant.

Keys come from ``LANDCOVER_API_KEYS``. Comparisons run in constant time; the database
stores only the SHA-256 of a key (the *owner*), so a leaked database leaks no key. Every
query for adaptations filters on the owner, which is why another key's adaptation answers
404 exactly like one that never existed.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from api.errors import ApiError

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
    if not key:
        raise ApiError(
            401,
            f"missing API key; send it in the {HEADER} header (ask the operator for one)",
            "missing_api_key",
            {"WWW-Authenticate": HEADER},
        )
    given = key.encode("utf-8", "surrogateescape")
    if not any(hmac.compare_digest(given, k.encode("utf-8")) for k in keys):
        raise ApiError(
            401,
            f"unknown API key in the {HEADER} header; check it for typos or ask the "
            "operator for a valid one",
            "invalid_api_key",
            {"WWW-Authenticate": HEADER},
        )
    return owner_of(key)


Owner = Annotated[str, Depends(require_owner)]
