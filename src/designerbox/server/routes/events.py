"""GET /api/v1/jobs/{id}/events: a job's events as Server-Sent Events.

    event: progress
    id: 3
    data: {"event": "progress", "job": "...", "step": 3, "total": 20, "preview": "<base64 PNG>"}

Events: queued, started, progress, requeued, then one of finished, failed, cancelled (the stream
ends). A job from before this process started gets one event made from its stored state.
"""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from designerbox.server.deps import CurrentUser, EventsDep, QueueDep, owned_job
from designerbox.server.events import TERMINAL
from designerbox.server.queue import FINAL_STATES, JobRow

router = APIRouter(prefix="/jobs", tags=["job events"])

PING_SECONDS = 15.0
DB_CHECK_SECONDS = 1.0


def _sse(event: dict, event_id: int | None = None) -> str:
    head = f"event: {event['event']}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return head + f"data: {json.dumps(event)}\n\n"


def _from_row(row: JobRow) -> dict:
    """The event a job's stored state stands for (when this process has no log of it)."""
    kind = {"queued": "queued", "running": "started", "succeeded": "finished", "failed": "failed",
            "cancelled": "cancelled"}[row.state]
    event = {"event": kind, "job": row.id, "time": round(time.time(), 3)}
    if kind == "finished":
        event["images"] = [img["id"] for img in row.images]
        if row.result is not None:  # a verify job's report
            event["result"] = row.result
    if kind == "failed":
        event["error"] = row.error
    return event


@router.get("/{job_id}/events", summary="Server-Sent Events: queued, started, progress (with previews), "
            "finished / failed / cancelled", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def job_events(job_id: str, request: Request, queue: QueueDep, events: EventsDep,
                     user: CurrentUser) -> StreamingResponse:
    row = await asyncio.to_thread(owned_job, queue, job_id, user)  # 404 before the stream starts

    async def stream():
        sent, last_db, last_send = 0, time.monotonic(), time.monotonic()
        if not events.since(job_id, 0):
            yield _sse(_from_row(row))
            if row.state in FINAL_STATES:
                return
        while True:
            new = events.since(job_id, sent)
            for e in new:
                yield _sse(e, sent)
                sent += 1
                if e["event"] in TERMINAL:
                    return
            now = time.monotonic()
            if new:
                last_send = now
                continue
            if now - last_db > DB_CHECK_SECONDS:  # finished elsewhere (another process) or log pruned
                last_db = now
                current = await asyncio.to_thread(queue.get, job_id)
                if current.state in FINAL_STATES and not events.since(job_id, sent):
                    yield _sse(_from_row(current))
                    return
                if await request.is_disconnected():
                    return
            if now - last_send > PING_SECONDS:
                last_send = now
                yield ": ping\n\n"
            await asyncio.sleep(0.05)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
