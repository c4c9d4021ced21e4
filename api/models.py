"""ORM models: one table, ``adaptations``, the jobs and their results.

Owners are stored as the SHA-256 of their API key, never the key itself. Adapted weights
live in the storage folder (:mod:`api.store`) under the adaptation's id; the row keeps
metrics, timings and the state machine ``queued -> running -> done | failed`` (a job whose
replica died goes back to ``queued`` until it has used its attempts). ``request_hash`` is
the fingerprint of the request an ``Idempotency-Key`` was first used with.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """Timezone-aware current time (UTC)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of the service's tables."""


class JobStatus(enum.StrEnum):
    """States of an adaptation job."""

    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


ACTIVE = (JobStatus.queued.value, JobStatus.running.value)


class Adaptation(Base):
    """One adaptation of a base model to a user's labeled tiles."""

    __tablename__ = "adaptations"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_owner_idempotency"),
        Index("ix_status_created", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    model: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.queued.value)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    tiles: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    support_miou_before: Mapped[float | None] = mapped_column(Float, nullable=True)
    support_miou_after: Mapped[float | None] = mapped_column(Float, nullable=True)
    adapt_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    runner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


#: Columns added after the first release, with their SQL type: :func:`api.db.ensure_schema`
#: adds them to an existing table (the schema is additive; no migration tool needed).
ADDED_COLUMNS = {
    "request_hash": "VARCHAR(64)",
    "attempts": "INTEGER NOT NULL DEFAULT 0",
    "report": "JSON",
}


class Meta(Base):
    """Key/value facts shared by every replica (e.g. the storage id, see :mod:`api.store`)."""

    __tablename__ = "service_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
