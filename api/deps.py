"""What route handlers share, as ``Annotated`` dependencies.

:class:`Services` is built once by the app factory and kept on ``app.state``; handlers ask
for it with ``services: Svc``. Concurrency limits live in
:mod:`api.limits`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.engine import ModelEngine
from api.jobs import JobRunner
from api.limits import Slots
from api.settings import Settings
from api.store import Store


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
