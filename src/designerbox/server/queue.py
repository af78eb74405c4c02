"""The durable job queue: one row per job in SQLite (SQLAlchemy 2), every state change a
compare-and-set UPDATE, so two workers never both claim a job and a job finishes at most once.

    queued --claim--> running --finish--> succeeded
       ^                 |  \\--fail----> failed
       |                 |   \\-cancel--> cancelled
       +--requeue--------+   (a dead worker's job at startup, or the server stopping mid-job)

Choosing the next job: the highest priority first; within it, the user served least recently
(round-robin, so one user's batch does not starve the others); within a user, the oldest job.
A worker is named "host:pid:token"; a running job whose worker's process is gone is re-queued by
`requeue_orphans()` when a server starts. The request is stored with its seed already fixed, so a
job that runs again draws the same images.

A job may carry a callback URL (webhooks.py): callback_state is "pending" until the POST is
delivered or given up ("delivered", "failed"), so a server that stops in between sends it at start.
A queue file from before callbacks existed gets their columns in place.

Workers of a cluster (cluster.py: other processes, other hosts) hold a job under a lease: they claim
with `lease=` seconds and renew it (`heartbeat`) while the job runs. A running job whose lease has
run out belongs to a worker that died or lost the database: another worker may take it over
(`claim` does, when nothing is queued; `requeue_expired` puts such jobs back in the queue). Every
state change still checks the holder, so the late worker's result is dropped, not stored twice.
The records live in SQLite (a file) or any database SQLAlchemy reaches by URL (PostgreSQL).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from designerbox.jobs.schema import GenerationRequest
from designerbox.store.gallery import LOCAL_USER
from designerbox.store.sqlite import add_missing_columns, create_tables, open_engine

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATES = ("succeeded", "failed", "cancelled")
CALLBACK_COLUMNS = {"callback_url": "VARCHAR(2048)", "callback_state": "VARCHAR(16)",
                    "callback_attempts": "INTEGER NOT NULL DEFAULT 0", "callback_error": "TEXT",
                    "lease_until": "TIMESTAMP", "kind": "VARCHAR(16) NOT NULL DEFAULT 'generation'",
                    "result": "JSON"}
KINDS = ("generation", "tool", "verify")  # GenerationRequest; tool_jobs.ToolJobRequest; verify_jobs (an image)


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user: Mapped[str] = mapped_column(String(64), index=True, default=LOCAL_USER)
    priority: Mapped[int] = mapped_column(Integer, default=0)          # higher runs first
    state: Mapped[str] = mapped_column(String(16), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="generation", server_default="generation")
    request: Mapped[dict] = mapped_column(JSON)                         # GenerationRequest (seed fixed) or tool job
    source: Mapped[str] = mapped_column(String(16), default="api")      # api, openai, a1111, web
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)  # host:pid:token of the claimer
    device: Mapped[str | None] = mapped_column(String(32), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)           # claims so far
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    images: Mapped[list] = mapped_column(JSON, default=list)            # [{"id", "sha256", "path"}]
    stored: Mapped[bool] = mapped_column(Boolean, default=False)        # gallery rows written for images
    retry_of: Mapped[str | None] = mapped_column(String(32), nullable=True)
    callback_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    callback_state: Mapped[str | None] = mapped_column(String(16), nullable=True)  # pending, delivered, failed
    callback_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    callback_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # cluster workers
    result: Mapped[dict | None] = mapped_column(JSON, nullable=True)   # a verify job's report (no images)

    def public(self) -> dict:
        """As the API shows it: a succeeded job whose gallery rows are not all written yet is still "running"
        (for a moment; or until the next start repairs it), so a client never sees an image id it cannot fetch."""
        state = "running" if self.state == "succeeded" and not self.stored else self.state
        return {"id": self.id, "state": state, "kind": self.kind or "generation", "user": self.user, "priority": self.priority,
                "source": self.source, "request": self.request,
                "progress": {"step": self.step, "total": self.total_steps,
                             "fraction": _fraction(self.state, self.step, self.total_steps)},
                "created_at": _iso(self.created_at), "started_at": _iso(self.started_at),
                "finished_at": _iso(self.finished_at), "attempts": self.attempts, "device": self.device,
                "cancel_requested": self.cancel_requested, "error": self.error,
                "images": [img["id"] for img in self.images or []], "result": self.result, "retry_of": self.retry_of,
                "callback": None if self.callback_url is None else {
                    "url": self.callback_url, "state": self.callback_state, "attempts": self.callback_attempts,
                    "error": self.callback_error}}


class QuotaLock(Base):
    """One row per user, written at the start of each of their quota-checked submissions: the write takes
    the database's write lock (SQLite) or the row's lock (PostgreSQL) until the job is inserted, so the
    count and the insert of two API processes never interleave."""

    __tablename__ = "quota_locks"

    user: Mapped[str] = mapped_column(String(64), primary_key=True)
    submissions: Mapped[int] = mapped_column(Integer, default=0)


Admit = Callable[[int, list], None]  # (queued + running jobs, creation times of the last minute): raise to refuse


def _fraction(state: str, step: int, total: int | None) -> float:
    if state == "succeeded":
        return 1.0
    return round(min(step / total, 1.0), 4) if total else 0.0


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.replace(tzinfo=timezone.utc).isoformat()


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # SQLite keeps naive text; always UTC here


class UnknownJobError(KeyError):
    pass


class JobStateError(ValueError):
    """The job is not in a state that allows the operation (cancel a finished job, retry a running one)."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class JobQueue:
    """Jobs in `path`: a SQLite file (WAL mode: readers do not wait for the worker's writes) or a SQLAlchemy
    URL (the cluster's shared database)."""

    def __init__(self, path: Path | str):
        self.path = path
        self.engine = open_engine(path, wal=True)
        create_tables(Base.metadata, self.engine)
        add_missing_columns(self.engine, "jobs", CALLBACK_COLUMNS)

    # -- submitting and reading ---------------------------------------------------------------
    def submit(self, request: GenerationRequest | dict, *, user: str = LOCAL_USER, priority: int = 0,
               source: str = "api", retry_of: str | None = None, callback_url: str | None = None,
               kind: str = "generation", admit: Admit | None = None) -> JobRow:
        """Store a queued job. The seed is fixed here so a re-run (after a crash) draws the same images.
        A tool job's request is a dict (tool_jobs.ToolJobRequest as JSON), its seed fixed by the caller.
        admit (quotas): called with the user's counts from the database inside the inserting transaction,
        under the user's QuotaLock, so every API process sharing the database sees the same counts."""
        if kind not in KINDS:
            raise ValueError(f"unknown job kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        if isinstance(request, dict):
            data = request
        else:
            data = request.model_dump(exclude_unset=True, mode="json")
            if request.seed is None:
                data["seed"] = secrets.randbelow(2**32)
        row = JobRow(id=secrets.token_hex(8), user=user, priority=priority, state="queued", request=data, kind=kind,
                     source=source, created_at=_now(), attempts=0, step=0, cancel_requested=False, images=[],
                     stored=False, retry_of=retry_of, callback_url=callback_url,
                     callback_state="pending" if callback_url else None, callback_attempts=0)
        if admit is None:
            with Session(self.engine, expire_on_commit=False) as s:
                s.add(row)
                s.commit()
            return row
        return self._admit_and_insert(row, admit)

    def _admit_and_insert(self, row: JobRow, admit: Admit) -> JobRow:
        """Lock the user's QuotaLock row, count from the database, admit (or raise), insert, commit: one
        transaction. SQLite: the lock is the database's write lock (other writers wait, up to the busy
        timeout); a transaction whose snapshot went stale meanwhile is refused by SQLite and tried again."""
        with Session(self.engine) as s:  # the lock row, once per user (a concurrent twin's insert is fine)
            if s.get(QuotaLock, row.user) is None:
                s.add(QuotaLock(user=row.user, submissions=0))
                try:
                    s.commit()
                except IntegrityError:
                    s.rollback()
        for attempt in range(40):
            try:
                with Session(self.engine, expire_on_commit=False) as s:
                    s.execute(update(QuotaLock).where(QuotaLock.user == row.user)
                              .values(submissions=QuotaLock.submissions + 1))
                    active = s.scalar(select(func.count()).select_from(JobRow).where(
                        JobRow.user == row.user, JobRow.state.in_(("queued", "running"))))
                    recent = list(s.scalars(select(JobRow.created_at).where(
                        JobRow.user == row.user, JobRow.created_at >= _now() - timedelta(seconds=60))
                        .order_by(JobRow.created_at)).all())
                    admit(active, recent)  # raises to refuse: the session rolls back
                    row.created_at = _now()
                    s.add(row)
                    s.commit()
                    return row
            except OperationalError:
                if self.engine.dialect.name != "sqlite" or attempt == 39:
                    raise
                time.sleep(0.01 + 0.02 * random.random())  # "database is locked" (a stale snapshot): again
        raise AssertionError("unreachable")
    def get(self, job_id: str) -> JobRow:
        with Session(self.engine) as s:
            row = s.get(JobRow, job_id)
        if row is None:
            raise UnknownJobError(f"no job with id {job_id!r}")
        return row

    def list(self, state: str | None = None, user: str | None = None, limit: int = 50) -> list[JobRow]:
        q = select(JobRow).order_by(JobRow.created_at.desc()).limit(limit)
        if state is not None:
            q = q.where(JobRow.state == state)
        if state == "succeeded":  # as public() shows it: succeeded once its gallery rows exist
            q = q.where(JobRow.stored.is_(True))
        if user is not None:
            q = q.where(JobRow.user == user)
        with Session(self.engine) as s:
            return list(s.scalars(q).all())

    def position(self, job_id: str) -> int | None:
        """How many queued jobs were submitted before this queued one (a rough place in line)."""
        row = self.get(job_id)
        if row.state != "queued":
            return None
        with Session(self.engine) as s:
            return s.scalar(select(func.count()).select_from(JobRow).where(
                JobRow.state == "queued", JobRow.created_at < row.created_at))

    # -- a worker's side ------------------------------------------------------------------------
    def claim(self, worker: str, device: str, lease: float | None = None) -> JobRow | None:
        """Take the next job (priority, then round-robin by user, then age); None when none is queued.
        lease (seconds; cluster workers): hold it under a lease, and when nothing is queued take over a
        running job whose lease ran out (its worker died)."""
        lease_until = None if lease is None else _now() + timedelta(seconds=lease)
        for _ in range(20):  # another worker may take our pick between select and update: pick again
            with Session(self.engine) as s:
                top = s.scalar(select(func.max(JobRow.priority)).where(JobRow.state == "queued"))
                if top is None:
                    return None if lease is None else self._take_over(worker, device, lease_until)
                users = s.scalars(select(JobRow.user).where(JobRow.state == "queued", JobRow.priority == top)
                                  .distinct()).all()
                served = dict(s.execute(select(JobRow.user, func.max(JobRow.started_at))
                                        .where(JobRow.user.in_(users), JobRow.started_at.is_not(None))
                                        .group_by(JobRow.user)).all())
                user = min(users, key=lambda u: (served.get(u) is not None, served.get(u) or datetime.min, u))
                job_id = s.scalar(select(JobRow.id).where(JobRow.state == "queued", JobRow.priority == top,
                                                          JobRow.user == user)
                                  .order_by(JobRow.created_at, JobRow.id).limit(1))
                done = s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.state == "queued").values(
                    state="running", worker=worker, device=device, started_at=_now(), step=0,
                    attempts=JobRow.attempts + 1, error=None, lease_until=lease_until))
                s.commit()
                if done.rowcount == 1:
                    return s.get(JobRow, job_id)
        return None

    def claim_more(self, first: JobRow, worker: str, device: str, fits: Callable[[JobRow], bool],
                   room: int, weight: Callable[[JobRow], int] = lambda row: 1) -> list[JobRow]:
        """More queued jobs to run together with `first` (just claimed): generations of its priority for
        which fits(row) holds, while their weights (images) add up to at most `room`. They are picked
        round-robin by user (least recently served first, then one job per user in turn, each user's
        oldest first), so a batch serves many users rather than one user's backlog."""
        with Session(self.engine) as s:
            rows = s.scalars(select(JobRow).where(JobRow.state == "queued", JobRow.priority == first.priority,
                                                  JobRow.kind == "generation")
                             .order_by(JobRow.created_at, JobRow.id).limit(500)).all()
            served = dict(s.execute(select(JobRow.user, func.max(JobRow.started_at))
                                    .where(JobRow.user.in_({r.user for r in rows}), JobRow.started_at.is_not(None))
                                    .group_by(JobRow.user)).all())
        per_user: dict[str, list[JobRow]] = {}
        for row in rows:
            if fits(row):
                per_user.setdefault(row.user, []).append(row)
        order = sorted(per_user, key=lambda u: (served.get(u) is not None, served.get(u) or datetime.min, u))
        picked, turn = [], 0
        while any(per_user.values()):
            user = order[turn % len(order)]
            turn += 1
            if not per_user[user]:
                continue
            row = per_user[user].pop(0)
            if weight(row) > room:
                continue
            with Session(self.engine) as s:
                done = s.execute(update(JobRow).where(JobRow.id == row.id, JobRow.state == "queued").values(
                    state="running", worker=worker, device=device, started_at=_now(), step=0,
                    attempts=JobRow.attempts + 1, error=None, lease_until=first.lease_until)
                                 .execution_options(synchronize_session=False))
                s.commit()
                if done.rowcount == 1:
                    picked.append(s.get(JobRow, row.id))
                    room -= weight(row)
        return picked

    def _take_over(self, worker: str, device: str, lease_until: datetime) -> JobRow | None:
        """The oldest running job whose lease ran out, now held by `worker` (compare-and-set on the old holder)."""
        with Session(self.engine) as s:
            for row in s.scalars(select(JobRow).where(JobRow.state == "running", JobRow.lease_until < _now())
                                 .order_by(JobRow.priority.desc(), JobRow.created_at)).all():
                done = s.execute(update(JobRow).where(JobRow.id == row.id, JobRow.state == "running",
                                                      JobRow.worker == row.worker, JobRow.lease_until < _now())
                                 .values(worker=worker, device=device, started_at=_now(), step=0,
                                         attempts=JobRow.attempts + 1, lease_until=lease_until)
                                 .execution_options(synchronize_session=False))  # PostgreSQL: aware vs naive
                s.commit()
                if done.rowcount == 1:
                    return s.get(JobRow, row.id)
        return None

    def heartbeat(self, job_id: str, worker: str, lease: float) -> bool | None:
        """Renew the worker's lease on a running job; returns whether a cancel was asked for, None when the
        worker no longer holds the job (it was taken over: its result will be dropped)."""
        with Session(self.engine) as s:
            done = s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.worker == worker,
                                                  JobRow.state == "running")
                             .values(lease_until=_now() + timedelta(seconds=lease)))
            s.commit()
            if done.rowcount != 1:
                return None
            return bool(s.scalar(select(JobRow.cancel_requested).where(JobRow.id == job_id)))

    def progress(self, job_id: str, worker: str, step: int, total: int | None) -> bool:
        """Record the step; returns whether a cancel was asked for (a worker in another process learns it here)."""
        with Session(self.engine) as s:
            s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.worker == worker, JobRow.state == "running")
                      .values(step=step, total_steps=total))
            s.commit()
            return bool(s.scalar(select(JobRow.cancel_requested).where(JobRow.id == job_id)))

    def finish(self, job_id: str, worker: str, images: list[dict], result: dict | None = None) -> bool:
        """running -> succeeded, only while this worker still holds the job; False if it does not."""
        return self._move(job_id, worker, "succeeded", images=images, result=result, finished_at=_now())

    def fail(self, job_id: str, worker: str, error: str) -> bool:
        return self._move(job_id, worker, "failed", error=error, finished_at=_now())

    def mark_cancelled(self, job_id: str, worker: str) -> bool:
        return self._move(job_id, worker, "cancelled", finished_at=_now())

    def release(self, job_id: str, worker: str) -> bool:
        """running -> queued: the worker stops before the job is done (server shutting down)."""
        return self._move(job_id, worker, "queued", worker=None, step=0, lease_until=None)

    def mark_stored(self, job_id: str) -> None:
        with Session(self.engine) as s:
            s.execute(update(JobRow).where(JobRow.id == job_id).values(stored=True))
            s.commit()

    def _move(self, job_id: str, holder: str, state: str, **values) -> bool:
        """running -> state, only while `holder` holds the job."""
        with Session(self.engine) as s:
            done = s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.state == "running",
                                                  JobRow.worker == holder).values(state=state, **values))
            s.commit()
        return done.rowcount == 1

    # -- a user's side ----------------------------------------------------------------------------
    def cancel(self, job_id: str) -> JobRow:
        """A queued job is cancelled at once; a running one is flagged and stops at its next sampling step."""
        row = self.get(job_id)
        with Session(self.engine) as s:
            s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.state == "queued")
                      .values(state="cancelled", cancel_requested=True, finished_at=_now()))
            s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.state == "running")
                      .values(cancel_requested=True))
            s.commit()
        row = self.get(job_id)
        if row.state in ("succeeded", "failed"):
            raise JobStateError(f"job {job_id} has already {row.state}; only queued or running jobs can be cancelled")
        return row

    def retry(self, job_id: str, admit: Admit | None = None) -> JobRow:
        """A new queued job with the same request (and seed) as a failed or cancelled one."""
        row = self.get(job_id)
        if row.state not in ("failed", "cancelled"):
            raise JobStateError(f"job {job_id} is {row.state}; only failed or cancelled jobs can be retried")
        request = row.request if row.kind in ("tool", "verify") else GenerationRequest(**row.request)
        return self.submit(request, user=row.user, priority=row.priority, kind=row.kind or "generation",
                           source=row.source, retry_of=row.id, callback_url=row.callback_url, admit=admit)

    # -- at startup ---------------------------------------------------------------------------------
    def requeue_orphans(self) -> list[str]:
        """Put back in the queue every running job whose worker process on this host is gone."""
        host = socket.gethostname()
        ids = []
        with Session(self.engine) as s:
            for row in s.scalars(select(JobRow).where(JobRow.state == "running")).all():
                w_host, w_pid, _ = (row.worker or "::").split(":", 2)
                if w_host == host and w_pid.isdigit() and _process_alive(int(w_pid)) and int(w_pid) != os.getpid():
                    continue  # another live server process on this host holds it
                if w_host != host and w_host:
                    continue  # another host's worker: not ours to judge
                done = s.execute(update(JobRow).where(JobRow.id == row.id, JobRow.state == "running",
                                                      JobRow.worker == row.worker)
                                 .values(state="queued", worker=None, step=0))
                if done.rowcount == 1:
                    ids.append(row.id)
            s.commit()
        return ids

    def requeue_expired(self) -> list[str]:
        """Put back in the queue every running job whose lease ran out (a cluster worker that died), on any host."""
        ids = []
        with Session(self.engine) as s:
            for row in s.scalars(select(JobRow).where(JobRow.state == "running", JobRow.lease_until < _now())).all():
                done = s.execute(update(JobRow).where(JobRow.id == row.id, JobRow.state == "running",
                                                      JobRow.worker == row.worker, JobRow.lease_until < _now())
                                 .values(state="queued", worker=None, step=0, lease_until=None)
                                 .execution_options(synchronize_session=False))
                if done.rowcount == 1:
                    ids.append(row.id)
            s.commit()
        return ids

    def queued_ids(self) -> list[str]:
        with Session(self.engine) as s:
            return list(s.scalars(select(JobRow.id).where(JobRow.state == "queued").order_by(JobRow.created_at)))

    def callback_result(self, job_id: str, state: str, attempts: int, error: str | None = None) -> None:
        """Record a callback's delivery: state "pending" (will be tried again), "delivered" or "failed"."""
        with Session(self.engine) as s:
            s.execute(update(JobRow).where(JobRow.id == job_id).values(
                callback_state=state, callback_attempts=attempts, callback_error=error))
            s.commit()

    def pending_callbacks(self) -> list[str]:
        """Finished jobs whose callback is not yet delivered nor given up (the process stopped in between)."""
        with Session(self.engine) as s:
            return list(s.scalars(select(JobRow.id).where(JobRow.callback_state == "pending",
                                                          JobRow.state.in_(FINAL_STATES))).all())

    def unstored(self) -> list[JobRow]:
        """Succeeded jobs whose images are not yet all in the gallery (the process died in between)."""
        with Session(self.engine) as s:
            return list(s.scalars(select(JobRow).where(JobRow.state == "succeeded", JobRow.stored.is_(False))).all())


def dumps(row: JobRow) -> str:
    return json.dumps(row.public(), indent=2)
