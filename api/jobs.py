"""Background adaptation jobs, driven by the database so that they survive restarts.

The database row is the job queue. Each service process (uvicorn worker or replica) runs
one :class:`JobRunner`: a dispatcher thread that claims queued rows and runs at most
``job_workers`` of them at once in daemon threads. While a job runs, its runner refreshes
``heartbeat_at`` every ``heartbeat_s``.

Claiming: on PostgreSQL the candidate rows are read with ``SELECT ... FOR UPDATE SKIP
LOCKED``, so replicas claiming at the same moment take different rows without waiting on
each other; on SQLite (one host) the claim is an atomic ``UPDATE ... WHERE
status='queued'``. Either way a job is run by exactly one runner at a time.

Fairness: among the queued jobs, the runner takes the oldest job of the API key with the
fewest running jobs, so one key's burst of big jobs cannot hold back another key's job
(per-key round robin; the rows' ``created_at`` order within a key).

Restart semantics: queued jobs are simply picked up again (their validated support set is
in the shared storage). A job left ``running`` by a process that is gone is put back in
the queue for another runner (immediately when its runner was a dead process on this
host, otherwise once its heartbeat is older than ``stale_after_s``), at most
``max_attempts`` times; after that it is marked ``failed`` with a reason. A clean shutdown
puts its own running jobs back in the queue. No job stays ``running`` for ever, and a job
that ends ``failed`` (or is deleted) leaves none of the client's data in storage.
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

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.db import session_scope
from api.models import Adaptation, JobStatus, utcnow

log = logging.getLogger("landcover.api.jobs")

#: Reason given to jobs whose process disappeared while they ran too often.
LOST_REASON = (
    "the service stopped while this adaptation was running (restart or crash), {n} time(s); "
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
        max_attempts: Runs a job may start before a lost run fails it for good.
        skip_locked: Claim with ``SELECT ... FOR UPDATE SKIP LOCKED`` (PostgreSQL).
        discard: Called with a job id whose data nobody will read (failed, deleted or
            reaped while it ran), to remove its files.
        finished: Called with a job id once it is recorded ``done`` (to drop its inputs).
        ready: Whether this process may claim jobs now (database and shared storage in
            place); checked before every claim.
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
        max_attempts: int = 3,
        skip_locked: bool = False,
        discard: Callable[[str], None] | None = None,
        finished: Callable[[str], None] | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.sessions = sessions
        self.work = work
        self.workers = workers
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.max_attempts = max_attempts
        self.skip_locked = skip_locked
        self.discard = discard
        self.finished = finished
        self.ready = ready
        self.runner_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._active: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Requeue jobs lost by dead processes, then start dispatching."""
        if self.ready is None or self.ready():
            try:
                self.reap()
            except Exception:  # the database may be down at start; the loop retries
                log.exception("could not look for lost jobs at start")
        self._thread = threading.Thread(target=self._loop, name="landcover-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop dispatching; this process's running jobs go back to the queue."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            mine = list(self._active)
        if mine:
            try:
                with session_scope(self.sessions) as s:
                    s.execute(
                        update(Adaptation)
                        .where(
                            Adaptation.id.in_(mine),
                            Adaptation.runner == self.runner_id,
                            Adaptation.status == JobStatus.running.value,
                        )
                        .values(
                            status=JobStatus.queued.value,
                            runner=None,
                            started_at=None,
                            heartbeat_at=None,
                            attempts=Adaptation.attempts - 1,  # not the job's fault
                        )
                    )
            except Exception:
                log.exception("could not requeue this process's running jobs at shutdown")

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
                if self.ready is not None and not self.ready():
                    self._wake.wait(self.poll_s)
                    self._wake.clear()
                    continue
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
        """Claim one queued job, fairly across API keys; ``None`` when none is queued."""
        with session_scope(self.sessions) as s:
            running = dict(
                s.execute(
                    select(Adaptation.owner, func.count())
                    .where(Adaptation.status == JobStatus.running.value)
                    .group_by(Adaptation.owner)
                ).all()
            )
            query = (
                select(Adaptation.id, Adaptation.owner)
                .where(Adaptation.status == JobStatus.queued.value)
                .order_by(Adaptation.created_at)
                .limit(64)
            )
            if self.skip_locked:
                query = query.with_for_update(skip_locked=True)
            candidates = s.execute(query).all()
            # per-key round robin: the key running the fewest jobs first, oldest job first
            order = sorted(
                range(len(candidates)), key=lambda i: (running.get(candidates[i][1], 0), i)
            )
            for i in order:
                job_id = candidates[i][0]
                now = utcnow()
                claimed = s.execute(
                    update(Adaptation)
                    .where(Adaptation.id == job_id, Adaptation.status == JobStatus.queued.value)
                    .values(
                        status=JobStatus.running.value,
                        runner=self.runner_id,
                        started_at=now,
                        heartbeat_at=now,
                        attempts=Adaptation.attempts + 1,
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
        """Requeue (or, past ``max_attempts``, fail) running jobs whose process is gone.

        Returns:
            How many jobs were requeued or failed.
        """
        cutoff = utcnow() - timedelta(seconds=self.stale_after_s)
        lost, failed = 0, []
        with session_scope(self.sessions) as s:
            rows = s.execute(
                select(
                    Adaptation.id, Adaptation.runner, Adaptation.heartbeat_at, Adaptation.attempts
                ).where(Adaptation.status == JobStatus.running.value)
            ).all()
            for job_id, runner, beat, attempts in rows:
                if runner == self.runner_id:
                    continue
                beat = aware(beat)
                if not (_pid_dead(runner) or beat is None or beat < cutoff):
                    continue
                if (attempts or 0) < self.max_attempts:
                    values: dict[str, object] = {
                        "status": JobStatus.queued.value,
                        "runner": None,
                        "started_at": None,
                        "heartbeat_at": None,
                    }
                else:
                    values = {
                        "status": JobStatus.failed.value,
                        "reason": LOST_REASON.format(n=attempts),
                        "finished_at": utcnow(),
                    }
                done = s.execute(
                    update(Adaptation)
                    .where(
                        Adaptation.id == job_id,
                        Adaptation.runner == runner,
                        Adaptation.status == JobStatus.running.value,
                    )
                    .values(**values)
                )
                lost += done.rowcount
                if done.rowcount and values["status"] == JobStatus.failed.value:
                    failed.append(job_id)
        for job_id in failed:
            self._discard(job_id)
        if lost:
            log.warning("requeued or failed %d lost running job(s)", lost)
            self._wake.set()
        return lost

    def _discard(self, job_id: str) -> None:
        if self.discard is not None:
            try:
                self.discard(job_id)
            except Exception:
                log.exception("could not remove the files of adaptation %s", job_id)

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
                now = None if kept else s.get(Adaptation, job_id)
                gone = not kept and (now is None or now.status == JobStatus.failed.value)
            if kept and values["status"] == JobStatus.done.value:
                if self.finished is not None:
                    self.finished(job_id)
            elif kept or gone:
                # failed here, or deleted / failed elsewhere while it ran: nobody will read
                # its files, and the client's tiles must not stay behind
                log.info("adaptation %s ended without a result; removing its files", job_id)
                self._discard(job_id)
            # else: requeued while it ran (its heartbeat went stale); the next run owns it
        except Exception:
            log.exception("could not record the end of adaptation %s", job_id)
        self._wake.set()
