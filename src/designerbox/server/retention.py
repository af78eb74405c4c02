"""Retention: finished jobs older than N days are deleted, then the uploaded inputs no job names any more.

    prune(studio, queue, days)   jobs (succeeded, failed, cancelled) finished more than `days` ago: deleted
                                 inputs/ab/<sha256> named by no remaining job (and untouched for an hour): deleted

Never deleted: a queued or running job; a succeeded job whose gallery rows are not yet written (the next
start stores them: worker.store_unfinished); a job whose callback is still pending (webhooks.py); the
gallery's images (outputs: they are the user's, deleted through the gallery). An input file younger than
INPUT_GRACE_SECONDS is kept even when no job names it: an upload is stored just before its job is queued,
and storing an upload that is already there touches the file (tool_jobs.store_input), so a submit that
races the prune keeps its file.

`designerbox jobs prune --older-than DAYS` runs it once; a server with DESIGNERBOX_JOB_RETENTION_DAYS set
runs it at start and every PRUNE_EVERY_SECONDS in a thread of its own (`Pruner`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from designerbox.server.queue import FINAL_STATES, JobQueue, JobRow
from designerbox.studio import Studio

log = logging.getLogger("designerbox.retention")

INPUT_GRACE_SECONDS = 3600        # an unreferenced input file younger than this is kept (a submit in flight)
PRUNE_EVERY_SECONDS = 6 * 3600    # the server's pruner runs this often after its first run at start
SHA256 = re.compile(r"[0-9a-f]{64}")
CHUNK = 500                       # ids per DELETE (SQLite's limit on bound variables)


def check_days(value, name: str = "--older-than") -> float:
    """A number of days, 0 or more; ValueError naming the problem otherwise."""
    try:
        days = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of days (0 or more, e.g. 30 or 0.5), not {value!r}") from None
    if not days >= 0 or days == float("inf"):  # also refuses nan
        raise ValueError(f"{name} must be a number of days (0 or more, e.g. 30 or 0.5), not {value!r}")
    return days


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # as queue.py stores times: naive UTC


def expired_jobs(queue: JobQueue, older_than_days: float) -> list[str]:
    """Ids of the finished jobs whose finish (or, for a row without one, creation) is older than the cutoff."""
    cutoff = _now() - timedelta(days=older_than_days)
    with Session(queue.engine) as s:
        return list(s.scalars(select(JobRow.id).where(
            JobRow.state.in_(FINAL_STATES),
            func.coalesce(JobRow.finished_at, JobRow.created_at) < cutoff,
            ~((JobRow.state == "succeeded") & JobRow.stored.is_(False)),          # gallery rows still to write
            func.coalesce(JobRow.callback_state, "") != "pending")).all())        # callback still to send


def referenced_inputs(queue: JobQueue, skip: set[str] = frozenset()) -> set[str]:
    """The sha256 of every input named by a job's request (uploads {"sha256", "path", ...} and option images
    {"sha256", "bytes"}, at any depth), jobs in `skip` left out."""
    found: set[str] = set()
    with Session(queue.engine) as s:
        for job_id, request in s.execute(select(JobRow.id, JobRow.request)).yield_per(1000):
            if job_id not in skip:
                _collect(request, found)
    return found


def _collect(value, found: set[str]) -> None:
    if isinstance(value, dict):
        sha = value.get("sha256")
        if isinstance(sha, str) and SHA256.fullmatch(sha):
            found.add(sha)
        for v in value.values():
            _collect(v, found)
    elif isinstance(value, list):
        for v in value:
            _collect(v, found)
    elif isinstance(value, str) and value.startswith("inputs/"):  # an input named by its path only
        name = value.rsplit("/", 1)[-1]
        if SHA256.fullmatch(name):
            found.add(name)


def _input_files(root: Path):
    """Every file under root/inputs/ab/<sha256>."""
    folder = root / "inputs"
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*/*")):
        if path.is_file() and SHA256.fullmatch(path.name) and path.parent.name == path.name[:2]:
            yield path


def prune(studio: Studio, queue: JobQueue, older_than_days: float, dry_run: bool = False) -> dict:
    """Delete the finished jobs older than `older_than_days`, then the input files no remaining job names
    (and not touched for INPUT_GRACE_SECONDS). dry_run: delete nothing, report the same counts."""
    days = check_days(older_than_days, "older_than_days")
    # 1. the jobs: deleted first, so a retry of one of them (a new job naming its inputs) either comes
    #    before the scan below and keeps its inputs, or after and finds no job to retry
    ids = expired_jobs(queue, days)
    deleted = len(ids)
    if not dry_run:
        deleted = 0
        with Session(queue.engine) as s:
            for i in range(0, len(ids), CHUNK):
                done = s.execute(delete(JobRow).where(JobRow.id.in_(ids[i:i + CHUNK]),
                                                      JobRow.state.in_(FINAL_STATES)))
                deleted += done.rowcount
            s.commit()
    # 2. the inputs no remaining job names
    keep = referenced_inputs(queue, skip=set(ids) if dry_run else set())
    young = time.time() - INPUT_GRACE_SECONDS
    files, freed = 0, 0
    for path in _input_files(studio.settings.gallery_root):
        if path.name in keep:
            continue
        try:
            st = path.stat()
            if st.st_mtime > young:
                continue
            if not dry_run:
                path.unlink()
        except FileNotFoundError:  # another server's pruner was first
            continue
        files += 1
        freed += st.st_size
    if not dry_run:
        for folder in (studio.settings.gallery_root / "inputs").glob("*/"):
            try:
                folder.rmdir()  # empty ones only
            except OSError:
                pass  # not empty (or gone): nothing to do
    return {"older_than_days": days, "dry_run": dry_run, "jobs": deleted, "inputs": files, "bytes_freed": freed}


class Pruner:
    """The server's retention: prune once at start (in `start`), then every `every` seconds in a thread."""

    def __init__(self, studio: Studio, queue: JobQueue, days: float, every: float = PRUNE_EVERY_SECONDS):
        self.studio, self.queue, self.days, self.every = studio, queue, days, every
        self.last: dict | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        try:
            self.last = prune(self.studio, self.queue, self.days)
        except Exception:  # noqa: BLE001 - a database or file hiccup: the server goes on, the next run tries again
            log.exception("retention: pruning jobs older than %s days failed", self.days)
            return
        if self.last["jobs"] or self.last["inputs"]:
            log.info("retention: deleted %d job(s) finished over %s days ago and %d input file(s) (%d bytes)",
                     self.last["jobs"], self.days, self.last["inputs"], self.last["bytes_freed"])

    def start(self) -> None:
        self.run_once()
        self._thread = threading.Thread(target=self._run, name="designerbox-retention", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.run_once()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
