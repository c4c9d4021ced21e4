"""What route handlers share, as ``Annotated`` dependencies.

:class:`Services` is built once by the app factory and kept on ``app.state``; handlers ask
for it with ``services: Svc``. Concurrency limits live in
:mod:`api.limits`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.db import Database, ping, session_scope
from api.engine import ModelEngine
from api.errors import Unavailable
from api.jobs import JobRunner
from api.limits import RateLimiter, Slots
from api.models import Meta
from api.settings import Settings
from api.store import Store

log = logging.getLogger("landcover.api")


@dataclass
class Services:
    """The service's long-lived parts."""

    settings: Settings
    database: Database
    db: Engine
    sessions: sessionmaker[Session]
    store: Store
    engine: ModelEngine
    runner: JobRunner
    slots: Slots
    submit_lock: threading.Lock
    rates: RateLimiter
    auth_failures: RateLimiter
    storage_problem: str | None = None
    storage_checked: bool = False
    storage_lock: threading.Lock = field(default_factory=threading.Lock)

    def check_storage(self) -> str | None:
        """Compare this replica's storage id with the one recorded in the database.

        The first replica to start records its storage folder's id; a replica whose folder
        carries another id does not share the storage (its uploads and results would be
        invisible to the others), so it reports the problem instead of losing work.
        Checked once per process (the answer cannot change without a restart).
        """
        with self.storage_lock:
            if self.storage_checked:
                return self.storage_problem
            try:
                mine = self.store.storage_id()
            except ValueError as exc:
                self.storage_problem = str(exc)
                log.error(self.storage_problem)
                self.storage_checked = True
                return self.storage_problem
            try:
                with session_scope(self.sessions) as s:
                    row = s.get(Meta, "storage_id")
                    if row is None:
                        s.add(Meta(key="storage_id", value=mine))
                        recorded = mine
                    elif not row.value:  # left empty by a release that could race here
                        row.value = mine
                        recorded = mine
                    else:
                        recorded = row.value
            except IntegrityError:  # another replica recorded its id at the same moment
                with session_scope(self.sessions) as s:
                    recorded = s.get(Meta, "storage_id").value  # type: ignore[union-attr]
            if recorded != mine:
                self.storage_problem = (
                    f"the storage folder {self.store.root} (id {mine[:8]}) is not the one "
                    f"the other replicas use (id {recorded[:8]} in the database): mount the "
                    "same shared volume at LANDCOVER_DATA_DIR on every replica (docs/api.md, "
                    "'Scale-out')"
                )
                log.error(self.storage_problem)
            self.storage_checked = True
            return self.storage_problem

    def usable(self) -> bool:
        """Whether the database answers with its schema and the storage is the shared one."""
        if not self.database.ensure():
            return False
        try:
            return self.check_storage() is None
        except SQLAlchemyError:
            return False

    def problems(self) -> list[str]:
        """Why the database or the storage cannot be used now (empty when they can)."""
        if not self.database.ensure() or not ping(self.database.ping_engine):
            return ["the database does not answer; check LANDCOVER_DATABASE_URL"]
        try:
            problem = self.check_storage()
        except SQLAlchemyError:
            return ["the database does not answer; check LANDCOVER_DATABASE_URL"]
        return [problem] if problem else []

    def require_usable(self) -> None:
        """503 with ``Retry-After`` unless the database and the shared storage are usable."""
        if not self.usable():
            problems = self.problems() or ["the database does not answer"]
            raise Unavailable(f"{problems[0]}; nothing was stored, retry later", "not_ready")


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
