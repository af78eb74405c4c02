"""Check a request against what is installed and the user's quotas, then queue it: every front
door (REST, OpenAI, A1111, web page, retry) comes through here, so a bad request is refused before
it is queued.

Quotas (role "user" only; admins have none): at most `max_concurrent` queued + running jobs and
`jobs_per_minute` jobs submitted in any 60 s, each the user's own value or else the server's
default (Settings.quota_concurrent, quota_per_minute; 0: no limit). Over either: QuotaExceeded, a
429 with Retry-After. The counts come from the database, and the check and the insert are one
transaction under the user's lock row (JobQueue.submit's admit), so concurrent requests of one user
cannot slip past a limit together, even through several API processes sharing one database.

Images in a request (init_image, mask_image) must be data URLs here: a file path would let a caller
read files on the server (another user's gallery, say). Over Settings.max_image_bytes decoded they
are refused with a 413 before decoding; the rest are read once here (over 100 megapixels refused
from the header), so a broken or huge image is a clear error at submit, not a failed job.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime, timedelta, timezone

from designerbox.jobs.generate import RequestError, resolve
from designerbox.jobs.schema import GenerationRequest
from designerbox.presets import UnknownPresetError
from designerbox.registry.discovery import UnknownModelError
from designerbox.server.events import EventLog
from designerbox.server.queue import FINAL_STATES, JobQueue, JobRow
from designerbox.server.webhooks import CallbackURLError, check_callback_url
from designerbox.store.gallery import LOCAL_USER
from designerbox.store.users import User
from designerbox.studio import Studio


class InvalidRequest(ValueError):
    """A well-formed request that cannot run here (unknown model, style, size...): a 422."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


IMAGE_FIELDS = ("init_image", "mask_image")


class ImageTooLarge(Exception):
    """An uploaded image over the server's limit: a 413."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


class QuotaExceeded(Exception):
    """A user over a quota: a 429 with Retry-After (seconds)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


def text_to_image_models(studio: Studio) -> list[str]:
    return [m.id for m in studio.registry.list() if m.kind == "gan" or (m.kind == "diffusion" and m.defaults)]


def unknown_model(studio: Studio, model_id: str | None, field: str = "model") -> InvalidRequest:
    return InvalidRequest(f"unknown model {model_id!r}; text-to-image models here: "
                          f"{', '.join(text_to_image_models(studio))}", field)


def check_images(studio: Studio, request: GenerationRequest) -> None:
    """Uploaded images: data URLs only, within the byte limit, readable (header and pixels)."""
    from designerbox.jobs.generate import read_input_image

    limit = studio.settings.max_image_bytes
    for field in IMAGE_FIELDS:
        value = getattr(request, field, None)
        if value is None:
            continue
        if not value.startswith("data:"):
            raise InvalidRequest(f"{field}: the server takes images as data URLs (data:image/png;base64,...), "
                                 "not file paths (a path would be read on the server, not on your machine)", field)
        size = len(value.partition(",")[2]) * 3 // 4
        if limit and size > limit:
            raise ImageTooLarge(f"{field} is about {size} bytes, over this server's limit of {limit} bytes per "
                                "image (DESIGNERBOX_MAX_IMAGE_BYTES)", field)
        try:
            read_input_image(value, field)
        except RequestError as err:
            raise InvalidRequest(str(err), field) from None


def check(studio: Studio, request: GenerationRequest) -> None:
    """Raise InvalidRequest naming the problem and the valid choices; loads no model."""
    check_images(studio, request)
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


def admission(studio: Studio, user: User):
    """The user's quota check, for JobQueue.submit(admit=...): called with their queued + running jobs and
    the creation times of their jobs of the last minute, counted in the database inside the inserting
    transaction (so API processes sharing one database share the quotas); None for an admin."""
    if user.is_admin:
        return None
    settings = studio.settings
    concurrent = settings.quota_concurrent if user.max_concurrent is None else user.max_concurrent
    per_minute = settings.quota_per_minute if user.jobs_per_minute is None else user.jobs_per_minute
    if not concurrent and not per_minute:
        return None

    def admit(active: int, recent: list[datetime]) -> None:
        if concurrent and active >= concurrent:
            raise QuotaExceeded(f"user {user.name!r} has {active} jobs queued or running, the most allowed at "
                                f"once ({concurrent}); wait for one to finish or cancel one", retry_after=5)
        if per_minute and len(recent) >= per_minute:
            now = datetime.now(timezone.utc).replace(tzinfo=None)  # the queue keeps naive UTC
            wait = (recent[len(recent) - per_minute] + timedelta(seconds=60) - now).total_seconds()
            raise QuotaExceeded(f"user {user.name!r} has submitted {len(recent)} jobs in the last minute, the "
                                f"most allowed ({per_minute} a minute)", retry_after=max(1, math.ceil(wait)))

    return admit


def submit(studio: Studio, queue: JobQueue, events: EventLog, request: GenerationRequest, *, source: str = "api",
           priority: int = 0, user: User | None = None, callback_url: str | None = None) -> JobRow:
    check(studio, request)
    if callback_url is not None:
        try:
            check_callback_url(callback_url, studio.settings.webhook_hosts)
        except CallbackURLError as err:
            raise InvalidRequest(str(err), "callback_url") from None
    user = user or User(LOCAL_USER, "admin")
    row = queue.submit(request, user=user.name, priority=priority, source=source, callback_url=callback_url,
                       admit=admission(studio, user))
    events.publish(row.id, "queued", priority=priority)
    events.wakeup.set()
    return row


def retry(studio: Studio, queue: JobQueue, events: EventLog, job_id: str, user: User) -> JobRow:
    """A failed or cancelled job again (a new job, same request and seed), within the owner's quotas."""
    row = queue.retry(job_id, admit=admission(studio, user))
    events.publish(row.id, "queued", priority=row.priority, retry_of=job_id)
    events.wakeup.set()
    return row


async def wait(queue: JobQueue, job_id: str, timeout: float = 600.0, poll: float = 0.05) -> JobRow:
    """Wait for a job to reach a final state (for the synchronous OpenAI and A1111 endpoints)."""
    deadline = time.monotonic() + timeout
    while True:
        row = await asyncio.to_thread(queue.get, job_id)
        if row.state in FINAL_STATES and (row.state != "succeeded" or row.stored):  # images in the gallery
            return row
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} did not finish within {timeout:.0f} s; it is still {row.state}")
        await asyncio.sleep(poll)
