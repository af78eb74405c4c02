"""Jobs: status and progress, cancel, retry. A user sees only their own jobs (another's id is a
404, as a missing one); an admin sees everyone's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from designerbox.server.deps import CurrentUser, EventsDep, QueueDep, StudioDep, owned_job, owner_filter
from designerbox.server.queue import STATES, JobQueue, JobRow
from designerbox.server.schemas import JobList, JobPublic
from designerbox.server.submit import InvalidRequest, retry

router = APIRouter(prefix="/jobs", tags=["jobs"])


def job_public(row: JobRow, request: Request, queue: JobQueue) -> JobPublic:
    data = row.public()
    data["queue_position"] = queue.position(row.id) if row.state == "queued" else None
    data["image_urls"] = [str(request.url_for("get_image_png", image_id=i)) for i in data["images"]]
    return JobPublic(**data)


@router.get("", response_model=JobList, summary="Recent jobs, newest first")
def list_jobs(request: Request, queue: QueueDep, user: CurrentUser, state: Annotated[str | None, Query(
        description=f"one of {', '.join(STATES)}")] = None,
        owner: Annotated[str | None, Query(max_length=64, description="admins: only this user's jobs")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50) -> JobList:
    if state is not None and state not in STATES:
        raise InvalidRequest(f"unknown state {state!r}; valid states: {', '.join(STATES)}", "state")
    who = owner_filter(user) or owner
    return JobList(jobs=[job_public(r, request, queue) for r in queue.list(state=state, user=who, limit=limit)])


@router.get("/{job_id}", response_model=JobPublic, summary="A job's state and progress")
def get_job(job_id: str, request: Request, queue: QueueDep, user: CurrentUser) -> JobPublic:
    return job_public(owned_job(queue, job_id, user), request, queue)


@router.post("/{job_id}/cancel", response_model=JobPublic,
             summary="Cancel: a queued job at once, a running one within a sampling step")
def cancel_job(job_id: str, request: Request, queue: QueueDep, events: EventsDep, user: CurrentUser) -> JobPublic:
    before = owned_job(queue, job_id, user)
    if before.state in ("queued", "running"):
        events.request_cancel(job_id)
    row = queue.cancel(job_id)
    if before.state == "queued" and row.state == "cancelled":
        events.publish(job_id, "cancelled")
    return job_public(row, request, queue)


@router.post("/{job_id}/retry", status_code=202, response_model=JobPublic,
             summary="Queue a failed or cancelled job again (a new job, same request and seed)")
def retry_job(job_id: str, request: Request, studio: StudioDep, queue: QueueDep, events: EventsDep,
              user: CurrentUser) -> JobPublic:
    owned_job(queue, job_id, user)
    return job_public(retry(studio, queue, events, job_id, user), request, queue)
