"""Limits that protect the service: body bytes, concurrent heavy requests, request rates.

* :class:`BodyLimitMiddleware` counts request-body bytes as they stream in and answers 413
  once ``max_upload_bytes`` is passed, whatever ``Content-Length`` claims (or omits).
* :class:`Slots` bounds how many predictions (and synchronous ``/segment`` calls) run at
  once; a request that finds no free slot within ``predict_wait_s`` gets a 429 with
  ``Retry-After``; waiting requests are served fairly across API keys.
* :class:`RateLimiter` bounds each API key's request rate (and each client address's
  rate of failed authentications); past it, a 429 with ``Retry-After``.

Limits on tiles, pixels and active jobs are checked where the inputs are read
(:mod:`api.uploads`, :mod:`api.validation`, :mod:`api.routes.adaptations`).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import TooBusy, error_body


class Slots:
    """A bounded number of concurrent heavy requests, shared fairly between API keys.

    Waiting requests are served per-key round robin: when a slot frees, it goes to the
    waiting request whose key runs the fewest heavy requests now and, among those, whose
    key was granted a slot longest ago (then the oldest request), so one key's burst
    cannot hold back another key's single request. The queue is
    bounded in total and per key; past either bound, or after ``wait_s``, the request gets
    a 429 with ``Retry-After``.

    Args:
        size: Requests served at once.
        wait_s: How long a request waits for a slot before a 429.
        max_waiting: Requests allowed to wait at once; more get a 429 immediately (so
            waiting requests never tie up the server's whole thread pool).
        max_waiting_per_key: Requests of one key allowed to wait at once.
    """

    def __init__(
        self,
        size: int,
        wait_s: float,
        max_waiting: int | None = None,
        max_waiting_per_key: int | None = None,
    ) -> None:
        self._cond = threading.Condition()
        self._free = size
        self._running: Counter[str] = Counter()
        self._granted: dict[str, int] = {}  # key -> number of the grant it last got
        self._grants = itertools.count()
        self._waiters: list[tuple[int, str]] = []
        self._seq = itertools.count()
        self.size = size
        self.wait_s = wait_s
        self.max_waiting = 8 * size if max_waiting is None else max_waiting
        self.max_waiting_per_key = (
            max(1, self.max_waiting // 2) if max_waiting_per_key is None else max_waiting_per_key
        )

    @property
    def _waiting(self) -> int:
        return len(self._waiters)

    def _next(self) -> tuple[int, str]:
        return min(
            self._waiters,
            key=lambda t: (self._running[t[1]], self._granted.get(t[1], -1), t[0]),
        )

    @contextmanager
    def take(self, what: str, key: str = "") -> Iterator[None]:
        """Hold a slot for the block (``key``: the caller's owner id), or raise TooBusy."""
        with self._cond:
            if len(self._waiters) >= self.max_waiting:
                raise TooBusy(
                    f"{self.size} {what} running and {len(self._waiters)} waiting, the most "
                    "this service queues; retry after a few seconds",
                    retry_after_s=5,
                )
            if sum(1 for _, k in self._waiters if k == key) >= self.max_waiting_per_key:
                raise TooBusy(
                    f"this API key already has {self.max_waiting_per_key} {what} waiting for "
                    "a slot, the most one key may queue; wait for them, then retry",
                    retry_after_s=5,
                )
            ticket = (next(self._seq), key)
            self._waiters.append(ticket)
            deadline = time.monotonic() + self.wait_s
            try:
                while not (self._free > 0 and self._next() == ticket):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TooBusy(
                            f"{self.size} {what} already running and none finished within "
                            f"{self.wait_s:.0f} s; retry after a few seconds",
                            retry_after_s=5,
                        )
                    self._cond.wait(remaining)
            finally:
                self._waiters.remove(ticket)
                self._cond.notify_all()  # the head of the queue may have changed
            self._free -= 1
            self._running[key] += 1
            self._granted[key] = next(self._grants)
        try:
            yield
        finally:
            with self._cond:
                self._free += 1
                self._running[key] -= 1
                self._cond.notify_all()


class RateLimiter:
    """Request-rate limits per key, with the ``limits`` library's moving windows.

    Each limit string holds one or more rates (``"20/second;600/minute"``): the short
    window is the burst a client may send at once, the long one its sustained rate, which
    is how a token bucket behaves. Counts are per process (each replica counts its own).

    Args:
        rates: Rates in the ``limits`` notation, ``;``-separated.
    """

    def __init__(self, rates: str) -> None:
        self.items = parse_many(rates)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, key: str) -> float | None:
        """Count one request of ``key``; ``None`` if allowed, else seconds to wait."""
        for item in self.items:
            if not self.limiter.hit(item, key):
                stats = self.limiter.get_window_stats(item, key)
                return max(1.0, stats.reset_time - time.time())
        return None

    def describe(self) -> str:
        """The limits in words, e.g. ``20 per 1 second, 600 per 1 minute``."""
        return ", ".join(str(i) for i in self.items)


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
