"""Replay and diff over the API: POST /api/v1/images/{id}/verify queues a job of kind "verify"

    route (images.py) --submit_verify: the caller's image, its record readable-->  job {"image", "sha256", "path"}
    worker            --jobs.verify.verify: draw it again, compare-->              job.result = the report

A verification is a generation, so it runs on a worker like one (progress events, cancel, the cluster's
workers too), and the queued request names the gallery file, not the caller's path. The replay is not
kept: the job has no images, only the report (jobs/verify.py), its "image" the gallery id rather than a
server path. An image the caller may not see is a 404, as in images.py; one with no recipe to replay (no
record, a tool's or filter's output, drawn from an input image) is a 422 at submit; a model no longer
installed fails the job with verify's message naming the installed ones.
"""

from __future__ import annotations

from typing import Callable

from designerbox.jobs.generate import RequestError, request_from_record
from designerbox.server.deps import owner_filter
from designerbox.server.events import EventLog
from designerbox.server.queue import JobQueue, JobRow
from designerbox.server.submit import InvalidRequest, admission
from designerbox.store.png_metadata import MetadataError, read_record
from designerbox.store.users import User
from designerbox.studio import Studio


def submit_verify(studio: Studio, queue: JobQueue, events: EventLog, image_id: str, *, user: User,
                  priority: int = 0, source: str = "api") -> JobRow:
    """Queue a verify job for one of the user's images (UnknownImageError: a 404)."""
    gallery = studio.gallery
    row = gallery.get(image_id, owner_filter(user))
    if not gallery.file(row).is_file():
        raise InvalidRequest(f"image {row.id}'s file is no longer in the gallery", "image_id")
    try:
        record = read_record(gallery.file(row))
    except MetadataError:
        raise InvalidRequest(f"image {row.id} carries no readable DesignerBox record to replay", "image_id") from None
    if record.get("task") in ("tool", "filter"):
        raise InvalidRequest(f"image {row.id} was made by a {record['task']} from other images, not drawn from a "
                             "recipe; only generated images can be verified", "image_id")
    try:
        request_from_record(record)
    except (RequestError, KeyError, ValueError) as err:  # pydantic's ValidationError is a ValueError
        raise InvalidRequest(f"image {row.id} cannot be drawn again from its record: {err}", "image_id") from None
    job = queue.submit({"image": row.id, "sha256": row.sha256, "path": row.path}, user=user.name, priority=priority,
                       source=source, kind="verify", admit=admission(studio, user))
    events.publish(job.id, "queued", priority=priority)
    events.wakeup.set()
    return job


def run_verify_job(studio: Studio, request: dict, progress: Callable[[dict], None]) -> dict:
    """Run a queued verify job: the report of jobs.verify.verify, naming the image by its gallery id."""
    from designerbox.jobs.verify import verify

    path = studio.gallery.root / request["path"]
    if not path.is_file():
        raise ValueError(f"image {request['image']} is no longer in the gallery (deleted after the job was queued)")
    return verify(studio, path, progress=progress) | {"image": request["image"]}
