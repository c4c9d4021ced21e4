"""Database engine and sessions (SQLAlchemy 2): SQLite by default, PostgreSQL by URL.

SQLite runs in WAL mode with a busy timeout so that several threads (request handlers, the
job runner) and several uvicorn workers can share the file. PostgreSQL gets a bounded
connection pool whose waits are short (``pool_timeout``): a request that finds no free
connection fails fast with a 503 and ``Retry-After`` (see :mod:`api.errors`) instead of
queueing behind long work. No request holds a connection through long work: handlers read
what they need in a short :func:`session_scope` and close it before waiting for a slot,
adapting or predicting.

Tables are created lazily (:class:`Database.ensure`), so a process started while the
database is down keeps running, answers ``/ready`` with 503 and creates the tables once the
database answers. The schema is additive: columns added since the first release are added
to an existing table on start (:data:`api.models.ADDED_COLUMNS`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from api.models import ADDED_COLUMNS, Base

log = logging.getLogger("landcover.api.db")


def make_engine(url: str, *, pool_size: int = 10, pool_timeout: float = 5.0) -> Engine:
    """Create the engine for ``url`` (creating the SQLite file's folder if needed).

    Connecting is lazy: nothing is contacted here.

    Args:
        url: SQLAlchemy database URL.
        pool_size: Connections kept open per process (5 more may overflow).
        pool_timeout: Seconds a session waits for a pooled connection before failing.

    Returns:
        The engine (tables are created by :meth:`Database.ensure`).
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "connect_args": _connect_args(parsed)}
    in_memory = not parsed.database or parsed.database == ":memory:"
    if parsed.get_backend_name() == "sqlite" and not in_memory:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
    if not (parsed.get_backend_name() == "sqlite" and in_memory):
        kwargs.update(pool_size=pool_size, max_overflow=5, pool_timeout=pool_timeout)
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    return engine


def _connect_args(parsed: URL) -> dict[str, Any]:
    if parsed.get_backend_name() == "sqlite":
        return {"check_same_thread": False, "timeout": 30}
    if parsed.get_backend_name() == "postgresql":
        return {"connect_timeout": 3}
    return {}


def ensure_schema(engine: Engine) -> None:
    """Create missing tables and add the columns of :data:`ADDED_COLUMNS` that are missing."""
    Base.metadata.create_all(engine)
    have = {c["name"] for c in inspect(engine).get_columns("adaptations")}
    missing = {name: sql for name, sql in ADDED_COLUMNS.items() if name not in have}
    if missing:
        with engine.begin() as conn:
            for name, sql in missing.items():
                conn.execute(text(f"ALTER TABLE adaptations ADD COLUMN {name} {sql}"))
        log.info("added column(s) %s to the adaptations table", sorted(missing))


class Database:
    """The engine, its session factory and whether the schema is in place.

    Args:
        url: SQLAlchemy database URL.
        pool_size: See :func:`make_engine`.
        pool_timeout: See :func:`make_engine`.
    """

    def __init__(self, url: str, *, pool_size: int = 10, pool_timeout: float = 5.0) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size, pool_timeout=pool_timeout)
        self.sessions = make_sessionmaker(self.engine)
        # /ready pings over a connection of its own, so a busy pool never delays it
        self.ping_engine = create_engine(
            url, poolclass=NullPool, connect_args=_connect_args(make_url(url))
        )
        self._ready = False
        self._lock = threading.Lock()

    @property
    def is_postgres(self) -> bool:
        """Whether the database is PostgreSQL (row locks with ``SKIP LOCKED`` available)."""
        return self.engine.dialect.name == "postgresql"

    def ensure(self) -> bool:
        """Create the schema once the database answers; returns whether it is in place."""
        if self._ready:
            return True
        with self._lock:
            if not self._ready:
                try:
                    ensure_schema(self.engine)
                    self._ready = True
                except Exception as exc:
                    log.warning("database not usable yet: %s", str(exc).splitlines()[0][:200])
        return self._ready


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Session factory; objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ping(engine: Engine) -> bool:
    """Whether the database answers a trivial query."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
