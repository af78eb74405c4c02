"""Response schemas of the REST API (the request schema is jobs.schema.GenerationRequest)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class JobProgress(BaseModel):
    step: int
    total: int | None
    fraction: float


class JobPublic(BaseModel):
    id: str
    state: str                 # queued, running, succeeded, failed, cancelled
    kind: str = "generation"   # generation (POST /api/v1/generations), tool (POST /api/v1/tools/{name}) or
                               # verify (POST /api/v1/images/{id}/verify)
    user: str
    priority: int
    source: str                # api, web, openai, a1111
    request: dict              # the request as queued (its seed fixed); a tool job: tool, inputs, options, preset
    progress: JobProgress
    queue_position: int | None = None
    created_at: str
    started_at: str | None
    finished_at: str | None
    attempts: int
    device: str | None
    cancel_requested: bool
    error: str | None
    images: list[str]          # gallery ids; GET /api/v1/images/{id}.png
    image_urls: list[str] = []
    result: dict | None = None  # a verify job's report: identical, max_abs_diff, values_differing, recipe_changes
    retry_of: str | None
    callback: dict | None = None  # {"url", "state": pending|delivered|failed, "attempts", "error"}


class JobList(BaseModel):
    jobs: list[JobPublic]


class ImagePublic(BaseModel):
    id: str
    created_at: str
    model: str
    prompt: str
    seed: int
    size: str
    owner: str
    url: str
    record: dict | None = None  # what made it: only when one image is asked for


class ImageList(BaseModel):
    images: list[ImagePublic]


class ModelPublic(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    name: str
    kind: str
    family: str
    description: str
    good_at: list[str]
    licence: str
    licence_name: str = ""     # the licence document's title (registry/licences.py)
    commercial_use: Literal["yes", "conditions", "no", "unknown"] = "unknown"
    licence_condition: str = ""  # the condition, in one line, when commercial use is not simply "yes"
    native_size: tuple[int, int] | None
    default_size: tuple[int, int] | None
    defaults: dict | None
    text_to_image: bool        # can POST /api/v1/generations use it
    default: bool              # the model used when a request names none
    builtin: bool
    hash: str
    card: str | None = None    # the model card (markdown), when one model is asked for


class ModelList(BaseModel):
    models: list[ModelPublic]
