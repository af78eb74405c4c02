"""The OpenAI Images API, so OpenAI clients work unchanged: POST /v1/images/generations.

    model            one of our text-to-image model ids; omitted, or one of OpenAI's own model names
                     (dall-e-2, dall-e-3, gpt-image-*): the default model (the response says which ran)
    prompt, n        n images (batch_size)
    size             "WxH" or "auto" (the model's default size)
    response_format  "b64_json" (default) or "url" (a URL on this server, under /api/v1/images)

Other OpenAI options (quality, style, background "auto", user...) are accepted and have no effect;
ones we cannot honour (transparent background, output formats other than PNG, streaming) are
refused. Errors come back in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import base64
import time
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from designerbox.jobs.schema import GenerationRequest
from designerbox.server.deps import CurrentUser, EventsDep, QueueDep, StudioDep
from designerbox.server.submit import InvalidRequest, submit, wait

router = APIRouter(prefix="/v1/images", tags=["OpenAI compatible"])

OPENAI_MODEL_PREFIXES = ("dall-e-", "gpt-image-")


class OpenAIImageRequest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())  # OpenAI adds options often

    prompt: str
    model: str | None = None
    n: int | None = Field(1, ge=1, le=16)
    size: str | None = "auto"
    response_format: Literal["b64_json", "url"] | None = "b64_json"
    background: Literal["transparent", "opaque", "auto"] | None = None
    output_format: str | None = None
    stream: bool | None = None


def openai_error(message: str, param: str | None = None, status: int = 400, kind: str = "invalid_request_error",
                 headers: dict | None = None):
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "param": param,
                                                               "code": None}}, headers=headers)


def error_response(err: RequestValidationError | ValidationError) -> JSONResponse:
    parts, param = [], None
    for e in err.errors():
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        param = param or (loc[-1] if loc else None)
        parts.append(f"{'.'.join(loc) or 'request'}: {str(e.get('msg', '')).removeprefix('Value error, ')}")
    return openai_error("; ".join(parts), param)


def _size(text: str | None) -> tuple[int, int] | None:
    if text in (None, "auto"):
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InvalidRequest(f"size must be 'auto' or WIDTHxHEIGHT such as '512x512', not {text!r}", "size") from None
    return w, h


@router.post("/generations", summary="OpenAI Images API: create images (waits for them)")
async def openai_generate(body: OpenAIImageRequest, request: Request, studio: StudioDep, queue: QueueDep,
                          events: EventsDep, user: CurrentUser):
    if body.stream:
        return openai_error("streaming is not supported here; leave stream unset", "stream")
    if body.background == "transparent":
        return openai_error("transparent backgrounds are not supported; use 'opaque' or 'auto'", "background")
    if body.output_format not in (None, "png"):
        return openai_error(f"output_format {body.output_format!r} is not supported; only 'png'", "output_format")
    model = None if body.model is None or body.model.startswith(OPENAI_MODEL_PREFIXES) else body.model
    try:
        size = _size(body.size)
        options = {"width": size[0], "height": size[1]} if size else {}
        req = GenerationRequest(prompt=body.prompt, model=model, batch_size=body.n or 1, **options)
        row = submit(studio, queue, events, req, source="openai", user=user)
    except ValidationError as err:
        return error_response(err)
    except InvalidRequest as err:
        return openai_error(str(err), err.field)
    row = await wait(queue, row.id)
    if row.state != "succeeded":
        return openai_error(f"the job {row.id} {row.state}: {row.error or ''}".strip(), None, 500, "server_error")
    data = []
    for ref in row.images:
        if body.response_format == "url":
            data.append({"url": str(request.url_for("get_image_png", image_id=ref["id"]))})
        else:
            png = (studio.gallery.root / ref["path"]).read_bytes()
            data.append({"b64_json": base64.b64encode(png).decode()})
    return {"created": int(time.time()), "data": data, "output_format": "png",
            "model": row.request.get("model") or studio.registry.get(None).id}
