"""What route handlers share, as ``Annotated`` dependencies.

:class:`Services` is built once by the app factory and kept on ``app.state``; handlers ask
for it with ``services: Svc``. Predictions (and synchronous ``/segment`` calls) take a slot
of :class:`Slots`, which bounds how many run at once and answers 429 when none frees up in
time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.engine import ModelEngine
from api.errors import TooBusy
from api.jobs import JobRunner
from api.settings import Settings
from api.store import Store


class Slots:
    """A bounded number of concurrent heavy requests.

    Args:
        size: Requests served at once.
        wait_s: How long a request waits for a slot before a 429.
    """

    def __init__(self, size: int, wait_s: float) -> None:
        self._sem = threading.BoundedSemaphore(size)
        self.size = size
        self.wait_s = wait_s

    @contextmanager
    def take(self, what: str) -> Iterator[None]:
        """Hold a slot for the block, or raise :class:`TooBusy`."""
        if not self._sem.acquire(timeout=self.wait_s):
            raise TooBusy(
                f"{self.size} {what} already running and none finished within "
                f"{self.wait_s:.0f} s; retry after a few seconds",
                retry_after_s=5,
            )
        try:
            yield
        finally:
            self._sem.release()


@dataclass
class Services:
    """The service's long-lived parts."""

    settings: Settings
    db: Engine
    sessions: sessionmaker[Session]
    store: Store
    engine: ModelEngine
    runner: JobRunner
    slots: Slots
    submit_lock: threading.Lock


def get_services(request: Request) -> Services:
    """Dependency: the app's :class:`Services`."""
    return request.app.state.services


def get_session(services: Annotated[Services, Depends(get_services)]) -> Iterator[Session]:
    """Dependency: a database session closed after the request."""
    session = services.sessions()
    try:
        yield session
    finally:
        session.close()


Svc = Annotated[Services, Depends(get_services)]
Db = Annotated[Session, Depends(get_session)]
