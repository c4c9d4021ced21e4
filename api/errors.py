"""Errors of the service: every one becomes a 4xx JSON body ``{"detail": ..., "code": ...}``.

A detail always says what was wrong and what to do. Route and upload code raises
:class:`ApiError` (or a subclass); :func:`install_handlers` turns it, FastAPI's request
validation errors and the data layer's ``ValueError`` exceptions into responses. Anything else is
a bug and becomes a 500 without internals in the body.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("landcover.api")


class ApiError(Exception):
    """An error the client can fix.

    Args:
        status: HTTP status code (4xx).
        detail: What was wrong and what to do.
        code: Stable machine-readable code (e.g. ``"band_mismatch"``).
        headers: Extra response headers (``Retry-After`` for 429).
    """

    def __init__(
        self, status: int, detail: str, code: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.headers = headers or {}


class NotFound(ApiError):
    """An adaptation or model that does not exist (or belongs to another key)."""

    def __init__(self, what: str, hint: str) -> None:
        super().__init__(404, f"{what} not found; {hint}", "not_found")


class BadInput(ApiError):
    """Input that parses but is unusable (422)."""

    def __init__(self, detail: str, code: str = "invalid_input") -> None:
        super().__init__(422, detail, code)


class TooLarge(ApiError):
    """An upload beyond a byte or pixel limit (413)."""

    def __init__(self, detail: str, code: str = "too_large") -> None:
        super().__init__(413, detail, code)


class TooBusy(ApiError):
    """A concurrency limit is reached (429 with ``Retry-After``)."""

    def __init__(self, detail: str, retry_after_s: int = 5) -> None:
        super().__init__(429, detail, "too_busy", {"Retry-After": str(retry_after_s)})


class UnsupportedMedia(ApiError):
    """An upload whose content is not one of the accepted formats (415)."""

    def __init__(self, detail: str) -> None:
        super().__init__(415, detail, "unsupported_media_type")


class Conflict(ApiError):
    """The resource is not in a state that allows the call (409)."""

    def __init__(self, detail: str, code: str = "conflict") -> None:
        super().__init__(409, detail, code)


def error_body(detail: str, code: str, **extra: Any) -> dict[str, Any]:
    """JSON body of every error response."""
    return {"detail": detail, "code": code, **extra}


def _describe_validation(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(loc) or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return (
        "the request does not match the API: "
        + "; ".join(parts)
        + ". See /docs for the expected fields and types."
    )


def install_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the same JSON shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.detail, exc.code), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse(
            error_body(_describe_validation(errors), "validation_error", errors=errors),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            detail = f"{detail}: no such path; see /docs for the API's endpoints"
        elif exc.status_code == 405:
            detail = f"{detail}: this path does not accept that method; see /docs"
        code = "too_large" if exc.status_code == 413 else f"http_{exc.status_code}"
        return JSONResponse(
            error_body(detail, code),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body(
                "internal error; the request was not applied. Retry later and report it "
                "to the operator if it persists.",
                "internal_error",
            ),
            status_code=500,
        )
