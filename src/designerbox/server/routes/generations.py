"""POST /api/v1/generations: a job from the one request schema, owned by the caller; optionally
with a callback URL that gets a signed POST when the job ends (webhooks.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from designerbox.jobs.schema import GenerationRequest
from designerbox.server.deps import CurrentUser, EventsDep, QueueDep, StudioDep
from designerbox.server.routes.jobs import job_public
from designerbox.server.schemas import JobPublic
from designerbox.server.submit import submit

router = APIRouter(prefix="/generations", tags=["generations"])


@router.post("", status_code=202, response_model=JobPublic,
             summary="Queue a generation; follow it at /api/v1/jobs/{id} or its /events stream")
def create_generation(body: GenerationRequest, request: Request, studio: StudioDep, queue: QueueDep,
                      events: EventsDep, user: CurrentUser, priority: Annotated[int, Query(ge=-10, le=10)] = 0,
                      source: Annotated[str, Query(pattern="^(api|web)$")] = "api",
                      callback_url: Annotated[str | None, Query(
                          max_length=2048, description="POSTed (signed, see README) when the job ends; "
                          "its host must be on the server's webhook allow-list")] = None) -> JobPublic:
    row = submit(studio, queue, events, body, source=source, priority=priority, user=user,
                 callback_url=callback_url)
    return job_public(row, request, queue)
