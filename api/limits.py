"""Limits that protect the service: request-body bytes and concurrent heavy requests.

* :class:`BodyLimitMiddleware` counts request-body bytes as they stream in and answers 413
  once ``max_upload_bytes`` is passed, whatever ``Content-Length`` claims (or omits).
* :class:`Slots` bounds how many predictions (and synchronous ``/segment`` calls) run at
  once; a request that finds no free slot within ``predict_wait_s`` gets a 429 with
  ``Retry-After``.

Limits on tiles, pixels and active jobs are checked where the inputs are read
(:mod:`api.uploads`, :mod:`api.validation`, :mod:`api.routes.adaptations`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import TooBusy, error_body


class Slots:
    """A bounded number of concurrent heavy requests, with a bounded queue.

    Args:
        size: Requests served at once.
        wait_s: How long a request waits for a slot before a 429.
        max_waiting: Requests allowed to wait at once; more get a 429 immediately (so
            waiting requests never tie up the server's whole thread pool).
    """

    def __init__(self, size: int, wait_s: float, max_waiting: int | None = None) -> None:
        self._sem = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._waiting = 0
        self.size = size
        self.wait_s = wait_s
        self.max_waiting = 8 * size if max_waiting is None else max_waiting

    @contextmanager
    def take(self, what: str) -> Iterator[None]:
        """Hold a slot for the block, or raise :class:`TooBusy`."""
        with self._lock:
            if self._waiting >= self.max_waiting:
                raise TooBusy(
                    f"{self.size} {what} running and {self._waiting} waiting, the most this "
                    "service queues; retry after a few seconds",
                    retry_after_s=5,
                )
            self._waiting += 1
        try:
            acquired = self._sem.acquire(timeout=self.wait_s)
        finally:
            with self._lock:
                self._waiting -= 1
        if not acquired:
            raise TooBusy(
                f"{self.size} {what} already running and none finished within "
                f"{self.wait_s:.0f} s; retry after a few seconds",
                retry_after_s=5,
            )
        try:
            yield
        finally:
            self._sem.release()


class BodyLimitMiddleware:
    """ASGI middleware answering 413 once a request body passes ``max_bytes``.

    Args:
        app: The wrapped application.
        max_bytes: Largest accepted body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap ``receive`` with a byte counter."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(error_body(_too_large_detail(self.max_bytes), "too_large")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(HTTPException):
    """Raised inside ``receive`` when the body passes the limit (FastAPI re-raises it)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, _too_large_detail(max_bytes))


def _too_large_detail(max_bytes: int) -> str:
    return (
        f"request body larger than this service's limit of {max_bytes} bytes; "
        "send fewer or smaller files"
    )
