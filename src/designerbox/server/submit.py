"""Check a request against what is installed, then queue it: every front door (REST, OpenAI,
A1111, web page) comes through here, so a bad request is refused before it is queued."""

from __future__ import annotations

import asyncio
import time

from designerbox.jobs.generate import RequestError, resolve
from designerbox.jobs.schema import GenerationRequest
from designerbox.presets import UnknownPresetError
from designerbox.registry.discovery import UnknownModelError
from designerbox.server.events import EventLog
from designerbox.server.queue import FINAL_STATES, LOCAL_USER, JobQueue, JobRow
from designerbox.studio import Studio


class InvalidRequest(ValueError):
    """A well-formed request that cannot run here (unknown model, style, size...): a 422."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def text_to_image_models(studio: Studio) -> list[str]:
    return [m.id for m in studio.registry.list() if m.kind == "gan" or (m.kind == "diffusion" and m.defaults)]


def unknown_model(studio: Studio, model_id: str | None, field: str = "model") -> InvalidRequest:
    return InvalidRequest(f"unknown model {model_id!r}; text-to-image models here: "
                          f"{', '.join(text_to_image_models(studio))}", field)


def check(studio: Studio, request: GenerationRequest) -> None:
    """Raise InvalidRequest naming the problem and the valid choices; loads no model."""
    try:
        manifest = studio.registry.get(request.model)
    except UnknownModelError as err:
        raise unknown_model(studio, request.model) from err
    try:
        resolve(request, manifest)
    except (RequestError, UnknownPresetError) as err:
        raise InvalidRequest(str(err)) from err
    if request.upscaler not in (None, "none"):
        upscalers = [m.id for m in studio.registry.list(kind="upscaler")]
        if request.upscaler not in upscalers:
            raise InvalidRequest(f"unknown upscaler {request.upscaler!r}; installed upscalers: "
                                 f"{', '.join(upscalers) or 'none'}, or 'none'", "upscaler")


def submit(studio: Studio, queue: JobQueue, events: EventLog, request: GenerationRequest, *, source: str = "api",
           priority: int = 0, user: str = LOCAL_USER) -> JobRow:
    check(studio, request)
    row = queue.submit(request, user=user, priority=priority, source=source)
    events.publish(row.id, "queued", priority=priority)
    events.wakeup.set()
    return row


async def wait(queue: JobQueue, job_id: str, timeout: float = 600.0, poll: float = 0.05) -> JobRow:
    """Wait for a job to reach a final state (for the synchronous OpenAI and A1111 endpoints)."""
    deadline = time.monotonic() + timeout
    while True:
        row = await asyncio.to_thread(queue.get, job_id)
        if row.state in FINAL_STATES:
            return row
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} did not finish within {timeout:.0f} s; it is still {row.state}")
        await asyncio.sleep(poll)
