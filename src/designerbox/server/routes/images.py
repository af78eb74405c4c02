"""The gallery: list (filter by model and date, search prompt text), one image's record, its PNG, delete,
verify (a job drawing it again from its record: verify_jobs.py).
A user sees only their own images (another's id is a 404, as a missing one); an admin sees everyone's."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from designerbox.server.deps import CurrentUser, EventsDep, QueueDep, StudioDep, owner_filter
from designerbox.server.routes.jobs import job_public
from designerbox.server.schemas import ImageList, ImagePublic, JobPublic
from designerbox.server.verify_jobs import submit_verify
from designerbox.store.gallery import ImageRow

router = APIRouter(prefix="/images", tags=["images"])


def image_public(row: ImageRow, request: Request, record: bool = False) -> ImagePublic:
    s = row.summary()
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=timezone.utc)
    return ImagePublic(id=s["id"], created_at=created.isoformat(), model=s["model"], prompt=s["prompt"], seed=s["seed"],
                       size=s["size"], owner=s["owner"], url=str(request.url_for("get_image_png", image_id=row.id)),
                       record=row.record if record else None)


@router.get("", response_model=ImageList, summary="Gallery images, newest first")
def list_images(request: Request, studio: StudioDep, user: CurrentUser,
                model: Annotated[str | None, Query(description="only this model's images")] = None,
                q: Annotated[str | None, Query(max_length=200, description="prompt text contains (any case)")] = None,
                since: Annotated[datetime | None, Query(description="created at or after (ISO 8601; UTC without "
                                                               "an offset)")] = None,
                until: Annotated[datetime | None, Query(description="created before")] = None,
                owner: Annotated[str | None, Query(max_length=64, description="admins: only this user's")] = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 50,
                offset: Annotated[int, Query(ge=0, le=2**62, description="images to skip")] = 0) -> ImageList:
    rows = studio.gallery.list(limit=limit, model=model, search=q, since=since, until=until, offset=offset,
                               owner=owner_filter(user) or owner)
    return ImageList(images=[image_public(r, request) for r in rows])


@router.get("/{image_id}.png", response_class=FileResponse, summary="The PNG (with its record in text chunks)",
            responses={200: {"content": {"image/png": {}}}})
def get_image_png(image_id: str, studio: StudioDep, user: CurrentUser, download: bool = False) -> FileResponse:
    row = studio.gallery.get(image_id, owner_filter(user))
    name = f"{row.id}-{row.seed}.png"
    return FileResponse(studio.gallery.file(row), media_type="image/png",
                        filename=name if download else None,
                        content_disposition_type="attachment" if download else "inline")


@router.get("/{image_id}", response_model=ImagePublic, summary="One image and its record (what made it)")
def get_image(image_id: str, request: Request, studio: StudioDep, user: CurrentUser) -> ImagePublic:
    return image_public(studio.gallery.get(image_id, owner_filter(user)), request, record=True)


@router.delete("/{image_id}", response_model=ImagePublic, summary="Delete an image (its row and its file)")
def delete_image(image_id: str, request: Request, studio: StudioDep, user: CurrentUser) -> ImagePublic:
    return image_public(studio.gallery.delete(image_id, owner_filter(user)), request)


@router.post("/{image_id}/verify", status_code=202, response_model=JobPublic,
             summary="Queue a replay of the image from its record and a diff with the file; follow it at "
             "/api/v1/jobs/{id}, whose result is the report")
def verify_image(image_id: str, request: Request, studio: StudioDep, queue: QueueDep, events: EventsDep,
                 user: CurrentUser, priority: Annotated[int, Query(ge=-10, le=10)] = 0,
                 source: Annotated[str, Query(pattern="^(api|web)$")] = "api") -> JobPublic:
    row = submit_verify(studio, queue, events, image_id, user=user, priority=priority, source=source)
    return job_public(row, request, queue)
