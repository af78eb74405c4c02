"""Jobs: status and progress, cancel, retry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from designerbox.server.deps import EventsDep, QueueDep
from designerbox.server.queue import STATES, JobQueue, JobRow
from designerbox.server.schemas import JobList, JobPublic

router = APIRouter(prefix="/jobs", tags=["jobs"])


def job_public(row: JobRow, request: Request, queue: JobQueue) -> JobPublic:
    data = row.public()
    data["queue_position"] = queue.position(row.id) if row.state == "queued" else None
    data["image_urls"] = [str(request.url_for("get_image_png", image_id=i)) for i in data["images"]]
    return JobPublic(**data)


@router.get("", response_model=JobList, summary="Recent jobs, newest first")
def list_jobs(request: Request, queue: QueueDep, state: Annotated[str | None, Query(
        description=f"one of {', '.join(STATES)}")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50) -> JobList:
    if state is not None and state not in STATES:
        from designerbox.server.submit import InvalidRequest

        raise InvalidRequest(f"unknown state {state!r}; valid states: {', '.join(STATES)}", "state")
    return JobList(jobs=[job_public(r, request, queue) for r in queue.list(state=state, limit=limit)])


@router.get("/{job_id}", response_model=JobPublic, summary="A job's state and progress")
def get_job(job_id: str, request: Request, queue: QueueDep) -> JobPublic:
    return job_public(queue.get(job_id), request, queue)


@router.post("/{job_id}/cancel", response_model=JobPublic,
             summary="Cancel: a queued job at once, a running one within a sampling step")
def cancel_job(job_id: str, request: Request, queue: QueueDep, events: EventsDep) -> JobPublic:
    before = queue.get(job_id)
    if before.state in ("queued", "running"):
        events.request_cancel(job_id)
    row = queue.cancel(job_id)
    if before.state == "queued" and row.state == "cancelled":
        events.publish(job_id, "cancelled")
    return job_public(row, request, queue)


@router.post("/{job_id}/retry", status_code=202, response_model=JobPublic,
             summary="Queue a failed or cancelled job again (a new job, same request and seed)")
def retry_job(job_id: str, request: Request, queue: QueueDep, events: EventsDep) -> JobPublic:
    row = queue.retry(job_id)
    events.publish(row.id, "queued", priority=row.priority, retry_of=job_id)
    events.wakeup.set()
    return job_public(row, request, queue)
