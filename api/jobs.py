"""Background adaptation jobs, driven by the database so that they survive restarts.

The database row is the job queue. Each service process runs one :class:`JobRunner`: a
dispatcher thread that claims queued rows (an atomic ``UPDATE ... WHERE status='queued'``,
so several uvicorn workers or replicas never run the same job) and runs at most
``job_workers`` of them at once in daemon threads. While a job runs, its runner refreshes
``heartbeat_at`` every ``heartbeat_s``.

Restart semantics: queued jobs are simply picked up again (their validated support set is
on disk). A job left ``running`` by a process that is gone is marked ``failed`` with a
reason: immediately when its runner was a dead process on this host, otherwise once its
heartbeat is older than ``stale_after_s`` (another host, or a recycled pid). No job stays
``running`` forever. A clean shutdown fails its own running jobs at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.db import session_scope
from api.models import Adaptation, JobStatus, utcnow

log = logging.getLogger("landcover.api.jobs")

#: Reason given to jobs whose process disappeared while they ran.
LOST_REASON = (
    "the service stopped while this adaptation was running (restart or crash); "
    "create the adaptation again with the same tiles"
)
SHUTDOWN_REASON = (
    "the service shut down while this adaptation was running; "
    "create the adaptation again with the same tiles"
)


class JobError(Exception):
    """A job failure whose message is meant for the client (what was wrong, what to do)."""


#: ``work(adaptation_id) -> result fields`` (metrics and timings to store on the row).
Work = Callable[[str], dict[str, object]]


def aware(dt: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=UTC)


def _pid_dead(runner: str | None) -> bool:
    """Whether ``runner`` names a process of this host that no longer exists."""
    if not runner:
        return False
    parts = runner.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class JobRunner:
    """Claims and runs adaptation jobs of one process.

    Args:
        sessions: Session factory.
        work: The job body: adapt and store the result; returns the fields to save.
        workers: Jobs run at once by this process.
        poll_s: How often to look for queued jobs without being notified.
        heartbeat_s: Heartbeat period of running jobs.
        stale_after_s: Heartbeat age after which a running job is considered lost.
        discard: Called with a job id whose result nobody will read (deleted or reaped
            while it ran), to remove its files.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        work: Work,
        *,
        workers: int = 1,
        poll_s: float = 1.0,
        heartbeat_s: float = 2.0,
        stale_after_s: float = 30.0,
        discard: Callable[[str], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.work = work
        self.workers = workers
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.discard = discard
        self.runner_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._active: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Fail jobs lost by dead processes, then start dispatching."""
        self.reap()
        self._thread = threading.Thread(target=self._loop, name="landcover-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop dispatching; this process's running jobs are marked failed."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            mine = list(self._active)
        if mine:
            with session_scope(self.sessions) as s:
                s.execute(
                    update(Adaptation)
                    .where(Adaptation.id.in_(mine), Adaptation.status == JobStatus.running.value)
                    .values(
                        status=JobStatus.failed.value, reason=SHUTDOWN_REASON, finished_at=utcnow()
                    )
                )

    def notify(self) -> None:
        """Wake the dispatcher (a job was queued)."""
        self._wake.set()

    @property
    def busy(self) -> int:
        """Jobs running in this process."""
        with self._lock:
            return len(self._active)

    # ------------------------------------------------------------------ dispatcher
    def _loop(self) -> None:
        last_beat = 0.0
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now - last_beat >= self.heartbeat_s:
                    self._heartbeat()
                    self.reap()
                    last_beat = now
                while self.busy < self.workers and not self._stop.is_set():
                    job_id = self._claim()
                    if job_id is None:
                        break
                    thread = threading.Thread(
                        target=self._run, args=(job_id,), name=f"job-{job_id[:8]}", daemon=True
                    )
                    with self._lock:
                        self._active[job_id] = thread
                    thread.start()
            except Exception:  # the database may be briefly unreachable; try again later
                log.exception("job dispatcher iteration failed")
            self._wake.wait(min(self.poll_s, self.heartbeat_s))
            self._wake.clear()

    def _claim(self) -> str | None:
        with session_scope(self.sessions) as s:
            candidates = s.scalars(
                select(Adaptation.id)
                .where(Adaptation.status == JobStatus.queued.value)
                .order_by(Adaptation.created_at)
                .limit(8)
            ).all()
            for job_id in candidates:
                now = utcnow()
                claimed = s.execute(
                    update(Adaptation)
                    .where(Adaptation.id == job_id, Adaptation.status == JobStatus.queued.value)
                    .values(
                        status=JobStatus.running.value,
                        runner=self.runner_id,
                        started_at=now,
                        heartbeat_at=now,
                    )
                )
                if claimed.rowcount == 1:
                    return job_id
        return None

    def _heartbeat(self) -> None:
        with self._lock:
            mine = list(self._active)
        if not mine:
            return
        with session_scope(self.sessions) as s:
            s.execute(
                update(Adaptation)
                .where(Adaptation.id.in_(mine), Adaptation.runner == self.runner_id)
                .values(heartbeat_at=utcnow())
            )

    def reap(self) -> int:
        """Mark failed the running jobs whose process is gone; returns how many."""
        cutoff = utcnow() - timedelta(seconds=self.stale_after_s)
        lost = 0
        with session_scope(self.sessions) as s:
            rows = s.execute(
                select(Adaptation.id, Adaptation.runner, Adaptation.heartbeat_at).where(
                    Adaptation.status == JobStatus.running.value
                )
            ).all()
            for job_id, runner, beat in rows:
                if runner == self.runner_id:
                    continue
                beat = aware(beat)
                if _pid_dead(runner) or beat is None or beat < cutoff:
                    done = s.execute(
                        update(Adaptation)
                        .where(
                            Adaptation.id == job_id,
                            Adaptation.runner == runner,
                            Adaptation.status == JobStatus.running.value,
                        )
                        .values(
                            status=JobStatus.failed.value, reason=LOST_REASON, finished_at=utcnow()
                        )
                    )
                    lost += done.rowcount
        if lost:
            log.warning("marked %d lost running job(s) as failed", lost)
        return lost

    # ------------------------------------------------------------------ one job
    def _run(self, job_id: str) -> None:
        try:
            fields = self.work(job_id)
            values = {"status": JobStatus.done.value, "reason": None, **fields}
        except JobError as exc:
            values = {"status": JobStatus.failed.value, "reason": str(exc)}
        except Exception as exc:
            log.exception("adaptation %s failed", job_id)
            values = {
                "status": JobStatus.failed.value,
                "reason": f"internal error while adapting ({type(exc).__name__}); retry, and "
                "report it to the operator if it happens again",
            }
        finally:
            with self._lock:
                self._active.pop(job_id, None)
        values["finished_at"] = utcnow()
        try:
            with session_scope(self.sessions) as s:
                res = s.execute(
                    update(Adaptation)
                    .where(
                        Adaptation.id == job_id,
                        Adaptation.runner == self.runner_id,
                        Adaptation.status == JobStatus.running.value,
                    )
                    .values(**values)
                )
                kept = res.rowcount == 1
            if not kept:
                log.info("adaptation %s was deleted or reaped while running", job_id)
                if self.discard is not None:
                    self.discard(job_id)
        except Exception:
            log.exception("could not record the end of adaptation %s", job_id)
        self._wake.set()
