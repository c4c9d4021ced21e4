"""Errors of the service: each becomes a 4xx/503 JSON body ``{"detail": ..., "code": ...}``.

A detail always says what was wrong and what to do. Route and upload code raises
:class:`ApiError` (or a subclass); :func:`install_handlers` turns it, FastAPI's request
validation errors and the data layer's ``ValueError`` exceptions into responses. Anything else is
a bug and becomes a 500 without internals in the body, except overload and an unreachable
database: those are 503 with ``Retry-After`` (the client should simply retry).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

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

    def __init__(self, detail: str, retry_after_s: int = 5, code: str = "too_busy") -> None:
        super().__init__(429, detail, code, {"Retry-After": str(retry_after_s)})


class Unavailable(ApiError):
    """The service cannot serve the request now (503 with ``Retry-After``)."""

    def __init__(self, detail: str, code: str = "unavailable", retry_after_s: int = 5) -> None:
        super().__init__(503, detail, code, {"Retry-After": str(retry_after_s)})


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


def allowed_methods(app: Any, path: str) -> list[str]:
    """Every method the API documents at ``path`` (for ``Allow``), from the OpenAPI schema.

    A path such as ``/v1/adaptations/{id}`` is served by several routes (GET, DELETE); the
    router alone reports the methods of the first route only.
    """
    table = getattr(app.state, "allow_table", None)
    if table is None:
        table = []
        for template, operations in app.openapi().get("paths", {}).items():
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            methods = {m.upper() for m in operations if m.lower() in _METHODS}
            table.append((re.compile(f"^{pattern}$"), methods))
        app.state.allow_table = table
    found: set[str] = set()
    for regex, methods in table:
        if regex.match(path):
            found |= methods
    return sorted(found | {"OPTIONS"}) if found else []


_METHODS = {"get", "put", "post", "delete", "patch", "head"}


class OptionsMiddleware:
    """Answer ``OPTIONS`` with ``204`` and an ``Allow`` header listing every route's methods.

    A path such as ``/v1/adaptations/{id}`` is served by several routes (GET, DELETE); the
    router alone would answer ``OPTIONS`` with the methods of the first route only.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle ``OPTIONS``; pass everything else on."""
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            await self.app(scope, receive, send)
            return
        methods = allowed_methods(scope["app"], scope["path"])
        if not methods:
            await self.app(scope, receive, send)  # 404 from the router
            return
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [(b"allow", ", ".join(methods).encode())],
            }
        )
        await send({"type": "http.response.body", "body": b""})


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
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        status = exc.status_code
        headers = dict(getattr(exc, "headers", None) or {})
        code = "too_large" if status == 413 else f"http_{status}"
        if status == 404:
            detail = f"{detail}: no such path; see /docs for the API's endpoints"
        elif status == 405:
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path))
            detail = f"{detail}: this path accepts {headers['Allow']}; see /docs"
        elif status == 400 and detail.startswith(("Too many files", "Too many fields")):
            # Starlette's multipart parser stops at 1000 parts: a documented 413
            status, code = 413, "too_many_files"
            detail = (
                f"the form has too many parts ({detail.rstrip('.')}); send at most the "
                "service's tile limit of image/mask pairs, or one zip"
            )
        return JSONResponse(error_body(detail, code), status_code=status, headers=headers)

    @app.exception_handler(SATimeout)
    async def _pool(request: Request, exc: SATimeout) -> JSONResponse:
        log.warning("no free database connection for %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body(
                "the service is overloaded (no free database connection); retry after a "
                "few seconds",
                "overloaded",
            ),
            status_code=503,
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(DBAPIError)
    async def _db_down(request: Request, exc: DBAPIError) -> JSONResponse:
        if not exc.connection_invalidated and not isinstance(exc, OperationalError):
            return await _bug(request, exc)
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                    str(exc).splitlines()[0][:200])  # fmt: skip
        return JSONResponse(
            error_body(
                "the database does not answer; nothing was changed. Retry in a few seconds",
                "database_unavailable",
            ),
            status_code=503,
            headers={"Retry-After": "5"},
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
