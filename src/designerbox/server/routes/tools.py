"""The creation tools: GET /api/v1/tools lists every tool of the registry (options as JSON schema,
presets); POST /api/v1/tools/{name} queues a tool job owned by the caller, followed like a generation
at /api/v1/jobs/{id} (status, events, cancel, retry). Its outputs go to the caller's gallery.

The body is either JSON
    {"inputs": ["data:image/png;base64,..." or {"name": "shoe.jpg", "data": "data:..."}],
     "options": {"fill": 0.8}, "preset": "amazon"}
or multipart/form-data: one or more `inputs` files, `options` (a JSON object as text), `preset`.
A tool with a `brand` option (marketing) takes a kit inline or `"brand": "NAME"`, one of the caller's
kits (routes/brands.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from designerbox.server.deps import CurrentUser, EventsDep, QueueDep, StudioDep
from designerbox.server.routes.brands import brand_option
from designerbox.server.routes.jobs import job_public
from designerbox.server.schemas import JobPublic
from designerbox.server.submit import InvalidRequest
from designerbox.server.tool_jobs import MAX_INPUTS, all_tools, decode_data_url, submit_tool, tool_public
from designerbox.tools.registry import TOOL_MODULES, get_tool

router = APIRouter(prefix="/tools", tags=["tools"])


class ToolImageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("upload", max_length=255)
    data: str = Field(description="a data URL: data:image/png;base64,...")


class ToolJobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[str | ToolImageInput] = Field(default_factory=list, max_length=MAX_INPUTS,
                                               description="images as data URLs, or {name, data} objects")
    options: dict[str, Any] = Field(default_factory=dict, description="the tool's options (GET /api/v1/tools)")
    preset: str | None = Field(None, max_length=128, description="a preset id of the tool")


MULTIPART = {"type": "object", "properties": {
    "inputs": {"type": "array", "items": {"type": "string", "format": "binary"}, "maxItems": MAX_INPUTS},
    "options": {"type": "string", "description": "the tool's options as a JSON object"},
    "preset": {"type": "string"}}}
BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": ToolJobCreate.model_json_schema(ref_template="#/components/schemas/{model}")},
    "multipart/form-data": {"schema": MULTIPART}}}}


@router.get("", summary="The creation tools: options (JSON schema) and presets of each")
def list_tools() -> list[dict]:
    return all_tools()


@router.get("/{name}", summary="One creation tool: its options (JSON schema) and presets")
def describe_tool(name: str) -> dict:
    if name not in TOOL_MODULES:
        get_tool(name)  # a 404 naming the tools
    try:
        return tool_public(get_tool(name))
    except (ImportError, ValueError) as err:  # installed but broken here (a missing package, a bad preset file)
        raise HTTPException(503, f"the {name} tool cannot run on this server: {type(err).__name__}: {err}") from None


async def _json_body(request: Request) -> tuple[list[tuple[str, str]], dict, str | None]:
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequest("the body is not JSON; send a JSON object {inputs, options, preset} "
                             "or multipart/form-data") from None
    if not isinstance(raw, dict):
        raise InvalidRequest("the body must be a JSON object with inputs, options and preset")
    try:
        body = ToolJobCreate(**raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        if first.get("type") == "extra_forbidden":
            raise InvalidRequest(f"unknown field {where!r}; valid fields: inputs, options, preset") from None
        raise InvalidRequest(f"{where}: {first.get('msg')}", where.split(".")[0] or None) from None
    items = [("upload", i) if isinstance(i, str) else (i.name, i.data) for i in body.inputs]
    return items, body.options, body.preset


async def _form_body(request: Request, limit: int) -> tuple[list[tuple[str, bytes]], dict, str | None]:
    try:
        form = await request.form(max_files=MAX_INPUTS, max_fields=16)
    except Exception as err:  # noqa: BLE001 - starlette's MultiPartException, or a broken body
        raise InvalidRequest(f"the multipart body could not be read: {err}") from None
    uploads = []
    for i, f in enumerate(form.getlist("inputs")):
        if not isinstance(f, UploadFile):
            raise InvalidRequest(f"inputs[{i}] must be a file upload (or send JSON with data URLs)", "inputs")
        data = await f.read(limit + 1 if limit else -1)
        uploads.append((f.filename or f"upload-{i}", data))
    unknown = sorted(set(form.keys()) - {"inputs", "options", "preset"})
    if unknown:
        raise InvalidRequest(f"unknown form field {unknown[0]!r}; valid fields: inputs, options, preset")
    options: Any = {}
    if isinstance(text := form.get("options"), str) and text.strip():
        try:
            options = json.loads(text)
        except json.JSONDecodeError:
            raise InvalidRequest("options must be a JSON object, e.g. {\"fill\": 0.8}", "options") from None
    preset = form.get("preset")
    preset = preset if isinstance(preset, str) and preset else None
    return uploads, options, preset


@router.post("/{name}", status_code=202, response_model=JobPublic, openapi_extra=BODY,
             summary="Queue a tool job on uploaded images (JSON with data URLs, or multipart); "
             "follow it at /api/v1/jobs/{id}")
async def create_tool_job(name: str, request: Request, studio: StudioDep, queue: QueueDep, events: EventsDep,
                          user: CurrentUser, priority: Annotated[int, Query(ge=-10, le=10)] = 0,
                          source: Annotated[str, Query(pattern="^(api|web)$")] = "api",
                          callback_url: Annotated[str | None, Query(max_length=2048)] = None) -> JobPublic:
    get_tool(name)  # an unknown tool is a 404 before the body is read
    limit = studio.settings.max_image_bytes
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        uploads, options, preset = await _form_body(request, limit)
    elif kind in ("application/json", ""):
        items, options, preset = await _json_body(request)
        uploads = [(n, decode_data_url(d, f"inputs[{i}]", limit)) for i, (n, d) in enumerate(items)]
    else:
        raise InvalidRequest(f"unsupported content type {kind!r}; send application/json or multipart/form-data")
    if "brand" in get_tool(name).options.model_fields:  # "brand": "NAME", one of the caller's kits
        options = await asyncio.to_thread(brand_option, request.app.state.brands, user, options)
    row = await asyncio.to_thread(submit_tool, studio, queue, events, name, uploads, options, preset, user=user,
                                  priority=priority, source=source, callback_url=callback_url)
    return job_public(row, request, queue)
