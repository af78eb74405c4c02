"""The subset of AUTOMATIC1111's web UI API that scripts and clients (webuiapi...) use most:

    POST /sdapi/v1/txt2img       waits for the images; returns them as base64 PNGs with A1111's info
    GET  /sdapi/v1/sd-models     our text-to-image models, titled "id [hash]" as A1111 titles checkpoints
    GET  /sdapi/v1/progress      the running job's progress and preview
    GET  /sdapi/v1/samplers, /schedulers, /scripts; GET/POST /sdapi/v1/options (sd_model_checkpoint only);
    POST /sdapi/v1/interrupt

A1111 clients send every option every time (steps, sampler, cfg scale...): for a GAN those
sampling options are left out, since a GAN has none (the info says so). Options we cannot honour
when turned on (hires fix, face restoration, tiling, scripts) are refused with a 422.

Where the server needs API keys, send `Authorization: Bearer <key>` as with the other APIs (A1111
itself uses HTTP basic auth; webuiapi clients set `api.session.headers["Authorization"]`). Each
user has their own sd_model_checkpoint option, /progress shows and /interrupt stops only their own
running job (an admin's: anyone's).
"""

from __future__ import annotations

import base64
import json
import time

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from designerbox.jobs.generate import DIFFUSION_ONLY
from designerbox.jobs.schema import GenerationRequest
from designerbox.registry.discovery import UnknownModelError
from designerbox.registry.manifest import ModelManifest
from designerbox.server.deps import CurrentUser, EventsDep, QueueDep, StudioDep, owner_filter
from designerbox.server.queue import JobStateError
from designerbox.server.submit import InvalidRequest, submit, unknown_model, wait
from designerbox.store.png_metadata import A1111_SAMPLERS, A1111_SCHEDULES, infotext

router = APIRouter(prefix="/sdapi/v1", tags=["A1111 compatible"])

SAMPLER_IDS = {v.lower(): k for k, v in A1111_SAMPLERS.items()} | {k: k for k in A1111_SAMPLERS}
SCHEDULE_IDS = {v.lower(): k for k, v in A1111_SCHEDULES.items()}


class Txt2ImgRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # the many A1111 options we do not use are accepted and ignored

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] = []
    seed: int = -1
    batch_size: int = Field(1, ge=1, le=16)
    n_iter: int = Field(1, ge=1, le=16)
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    sampler_name: str | None = None
    sampler_index: str | None = None
    scheduler: str | None = None
    enable_hr: bool = False
    restore_faces: bool | None = False
    tiling: bool | None = False
    script_name: str | None = None
    override_settings: dict = {}
    send_images: bool = True


def _text_to_image(m: ModelManifest) -> bool:
    return m.kind == "gan" or (m.kind == "diffusion" and m.defaults is not None)


def _title(m: ModelManifest) -> str:
    return f"{m.id} [{m.short_hash}]" if m.short_hash else m.id


def _model_id(title: str | None) -> str | None:
    """A1111 names a checkpoint by title ("name [hash]") or file name; we take our id from either."""
    if not title:
        return None
    name = title.split(" [")[0].strip()
    return name.removesuffix(".safetensors")


def _sampler(name: str | None) -> tuple[str | None, str | None]:
    """("Euler a" | "DPM++ 2M Karras" | "euler_a") -> (sampler id, schedule id from an old-style suffix)."""
    if not name:
        return None, None
    key, schedule = name.strip().lower(), None
    for label, sid in SCHEDULE_IDS.items():
        if key.endswith(" " + label) and key not in SAMPLER_IDS:
            key, schedule = key[: -len(label) - 1], sid
    if key not in SAMPLER_IDS:
        raise InvalidRequest(f"unknown sampler {name!r}; valid samplers: {', '.join(A1111_SAMPLERS.values())}",
                             "sampler_name")
    return SAMPLER_IDS[key], schedule


def _schedule(name: str | None) -> str | None:
    if not name or name.lower() == "automatic":
        return None
    if name.lower() not in SCHEDULE_IDS:
        raise InvalidRequest(f"unknown scheduler {name!r}; valid schedulers: automatic, "
                             f"{', '.join(A1111_SCHEDULES.values())}", "scheduler")
    return SCHEDULE_IDS[name.lower()]


def to_request(body: Txt2ImgRequest, manifest: ModelManifest) -> GenerationRequest:
    for flag, what in (("enable_hr", "the hires fix"), ("restore_faces", "face restoration"), ("tiling", "tiling")):
        if getattr(body, flag):
            raise InvalidRequest(f"{what} ({flag}) is not available here; set it to false", flag)
    if body.script_name:
        raise InvalidRequest(f"scripts are not available here (script_name={body.script_name!r})", "script_name")
    if len(body.styles) > 1:
        raise InvalidRequest(f"one style at a time here, not {len(body.styles)}: {body.styles}", "styles")
    sampler, schedule = _sampler(body.sampler_name or body.sampler_index)
    schedule = _schedule(body.scheduler) or schedule
    if body.batch_size * body.n_iter > 16:
        raise InvalidRequest(f"batch_size x n_iter is {body.batch_size * body.n_iter}; at most 16 images a request",
                             "n_iter")
    options = dict(prompt=body.prompt, negative_prompt=body.negative_prompt, model=manifest.id,
                   steps=body.steps, cfg_scale=body.cfg_scale, sampler=sampler, schedule=schedule,
                   seed=None if body.seed < 0 else body.seed, batch_size=body.batch_size * body.n_iter,
                   style=body.styles[0] if body.styles else None)
    if body.width is not None or body.height is not None:
        options["width"], options["height"] = body.width or body.height, body.height or body.width
    if manifest.kind == "gan":  # A1111 clients always send sampling options; a GAN has none
        options = {k: v for k, v in options.items() if k not in DIFFUSION_ONLY}
    return GenerationRequest(**{k: v for k, v in options.items() if v is not None})


@router.post("/txt2img", summary="A1111: text to image (waits for the images)")
async def txt2img(body: Txt2ImgRequest, request: Request, studio: StudioDep, queue: QueueDep, events: EventsDep,
                  user: CurrentUser):
    chosen = (_model_id(body.override_settings.get("sd_model_checkpoint"))
              or request.app.state.a1111_checkpoint.get(user.name))
    try:
        manifest = studio.registry.get(chosen)
    except UnknownModelError:
        raise unknown_model(studio, chosen, "override_settings.sd_model_checkpoint") from None
    try:
        req = to_request(body, manifest)
    except ValidationError as err:
        e = err.errors()[0]
        raise InvalidRequest(f"{'.'.join(map(str, e['loc'])) or 'request'}: "
                             f"{e['msg'].removeprefix('Value error, ')}") from None
    row = submit(studio, queue, events, req, source="a1111", user=user)
    row = await wait(queue, row.id)
    if row.state != "succeeded":
        raise InvalidRequest(f"the job {row.id} {row.state}: {row.error or ''}".strip())
    pngs = [(studio.gallery.root / ref["path"]).read_bytes() for ref in row.images]
    records = [studio.gallery.get(ref["id"]).record for ref in row.images]
    r0 = records[0]
    info = {"prompt": req.prompt, "negative_prompt": req.negative_prompt, "all_prompts": [req.prompt] * len(records),
            "seed": r0["seed"], "all_seeds": [r["seed"] for r in records], "subseed": -1,
            "width": r0["output_size"][0], "height": r0["output_size"][1],
            "sampler_name": A1111_SAMPLERS.get(r0["request"]["sampler"], r0["request"]["sampler"]),
            "steps": r0["request"]["steps"], "cfg_scale": r0["request"]["cfg_scale"],
            "sd_model_name": manifest.id, "sd_model_hash": manifest.short_hash, "batch_size": body.batch_size,
            "infotexts": [infotext(r) for r in records], "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
            "designerbox_job": row.id, "designerbox_images": [ref["id"] for ref in row.images]}
    if manifest.kind == "gan":
        info["note"] = "a GAN draws in one network call: steps, sampler and cfg scale were not used"
    return {"images": [base64.b64encode(p).decode() for p in pngs] if body.send_images else [],
            "parameters": body.model_dump(), "info": json.dumps(info)}


@router.get("/sd-models", summary="A1111: text-to-image models")
def sd_models(studio: StudioDep, user: CurrentUser) -> list[dict]:
    return [{"title": _title(m), "model_name": m.id, "hash": m.short_hash or None, "sha256": m.weights_sha256 or None,
             "filename": str(m.folder), "config": None} for m in studio.registry.list() if _text_to_image(m)]


@router.get("/options", summary="A1111: options (only sd_model_checkpoint is kept)")
def get_options(request: Request, studio: StudioDep, user: CurrentUser) -> dict:
    return {"sd_model_checkpoint": _title(studio.registry.get(request.app.state.a1111_checkpoint.get(user.name)))}


@router.post("/options", summary="A1111: set sd_model_checkpoint, the model for requests that name none")
def set_options(body: dict, request: Request, studio: StudioDep, user: CurrentUser) -> dict:
    unknown = sorted(set(body) - {"sd_model_checkpoint"})
    if unknown:
        raise InvalidRequest(f"options {unknown} cannot be set here; only sd_model_checkpoint", unknown[0])
    if "sd_model_checkpoint" in body:
        m = studio.registry.get(_model_id(body["sd_model_checkpoint"]))
        if not _text_to_image(m):
            raise InvalidRequest(f"model {m.id!r} is a {m.kind} model, not a text-to-image model",
                                 "sd_model_checkpoint")
        request.app.state.a1111_checkpoint[user.name] = m.id
    return {}


@router.get("/samplers", summary="A1111: samplers")
def samplers(user: CurrentUser) -> list[dict]:
    return [{"name": label, "aliases": [sid], "options": {}} for sid, label in A1111_SAMPLERS.items()]


@router.get("/schedulers", summary="A1111: schedulers")
def schedulers(user: CurrentUser) -> list[dict]:
    return [{"name": "automatic", "label": "Automatic", "aliases": None}] + [
        {"name": sid, "label": label, "aliases": None} for sid, label in A1111_SCHEDULES.items()]


@router.get("/scripts", summary="A1111: scripts (none here)")
def scripts(user: CurrentUser) -> dict:
    return {"txt2img": [], "img2img": []}


@router.get("/progress", summary="A1111: progress of the running job, with a preview")
def progress(queue: QueueDep, events: EventsDep, user: CurrentUser, skip_current_image: bool = False) -> dict:
    running = queue.list(state="running", user=owner_filter(user), limit=1)
    waiting = len(queue.list(state="queued", user=owner_filter(user), limit=500))
    state = {"skipped": False, "interrupted": False, "job": "", "job_count": waiting + len(running),
             "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}
    if not running:
        return {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None, "textinfo": None}
    job = running[0]
    last = events.latest(job.id, "progress")
    step, total = (last["step"], last["total"]) if last else (job.step, job.total_steps or 0)
    fraction = step / total if total else 0.0
    started = events.latest(job.id, "started")
    elapsed = time.time() - started["time"] if started else 0.0
    eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
    state.update(job=f"job {job.id}", job_timestamp=job.created_at.strftime("%Y%m%d%H%M%S"),
                 sampling_step=step, sampling_steps=total, interrupted=job.cancel_requested)
    return {"progress": round(fraction, 4), "eta_relative": round(eta, 3), "state": state,
            "current_image": None if skip_current_image or not last else last.get("preview"),
            "textinfo": f"step {step}/{total}"}


@router.post("/interrupt", summary="A1111: stop the running job(s) at their next step")
def interrupt(queue: QueueDep, events: EventsDep, user: CurrentUser) -> dict:
    for job in queue.list(state="running", user=owner_filter(user), limit=100):
        events.request_cancel(job.id)
        try:
            queue.cancel(job.id)
        except JobStateError:
            pass  # it finished meanwhile: nothing to interrupt
    return {}
