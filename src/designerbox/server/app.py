"""The app factory: settings -> studio, queue, event log, workers -> FastAPI app.

Nothing starts at import or in create_app: the worker threads start when the app starts (its
lifespan) and stop when it stops, putting a job in progress back in the queue. At start, jobs left
running by a dead process are queued again, and finished jobs whose gallery rows were not written
get them; the webhook sender starts and sends callbacks left pending. With DESIGNERBOX_JOB_RETENTION_DAYS
set, finished jobs older than that and the uploads no job names are deleted at start and every few hours.

With a broker (`serve --broker redis://...`) the app runs no job and loads no model: each queued job
is sent to Celery for `designerbox worker` processes, whose events come back over Redis (cluster.py).

Every API route depends on `deps.authenticate` (the web page's files and /docs do not); request
bodies over Settings.max_body_bytes are refused by `limits.BodyLimit` before they are read.
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from designerbox import __version__
from designerbox.jobs.schema import GenerationRequest
from designerbox.registry.discovery import UnknownModelError
from designerbox.server.deps import AuthError, Forbidden, authenticate
from designerbox.server.events import EventLog
from designerbox.server.limits import BodyLimit
from designerbox.server.queue import JobQueue, JobStateError, UnknownJobError
from designerbox.server.retention import Pruner
from designerbox.server.routes import (a1111, brands, events, generations, images, jobs, models, openai_compat,
                                       presets, tools, users)
from designerbox.server.submit import ImageTooLarge, InvalidRequest, QuotaExceeded
from designerbox.server.webhooks import WebhookSender, server_secret
from designerbox.server.worker import Worker, devices, store_unfinished
from designerbox.settings import Settings
from designerbox.store.brands import BrandError, BrandStore, UnknownBrandError
from designerbox.store.gallery import UnknownImageError
from designerbox.store.users import UnknownUserError, UserError, UserStore
from designerbox.studio import Studio
from designerbox.tools.registry import UnknownToolError

log = logging.getLogger("designerbox.server")

# request bodies whose unknown fields are answered with the list of valid ones
BODY_FIELDS = {"/api/v1/generations": sorted(GenerationRequest.model_fields)}
DOCS = "Send `Authorization: Bearer <key>` once the server has API keys (any client: REST, OpenAI, A1111)."


def create_app(settings: Settings | None = None, *, workers: bool = True, broker: str | None = None) -> FastAPI:
    """The studio app. workers=False serves the API without running jobs (they stay queued); broker (a Redis
    URL): jobs run on `designerbox worker` processes, none in this one."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = app.state
        requeued = state.queue.requeue_orphans()
        stored = store_unfinished(state.queue, state.studio.gallery)
        if requeued or stored:
            log.warning("startup: %d job(s) left running by a stopped process queued again, %d finished job(s) "
                        "stored in the gallery", len(requeued), len(stored))
        state.webhooks.start()
        if settings.job_retention_days is not None:  # prune now, then every few hours (retention.py)
            state.pruner = Pruner(state.studio, state.queue, settings.job_retention_days)
            state.pruner.start()
        if state.cluster is not None:
            state.cluster.start()
        elif workers:
            for device in devices(settings):
                studio = Studio(dataclasses.replace(settings, device=device))
                state.workers.append(Worker(studio, state.queue, state.events))
            for w in state.workers:
                w.start()
        yield
        for w in state.workers:
            w.stop()
        if state.cluster is not None:
            state.cluster.stop()
        state.webhooks.stop()
        if state.pruner is not None:
            state.pruner.stop()

    app = FastAPI(title="DesignerBox", version=__version__, lifespan=lifespan, dependencies=[Depends(authenticate)],
                  description="Text to image with your own models. REST API under /api/v1; "
                  "OpenAI Images (/v1/images/generations) and A1111 (/sdapi/v1) compatible endpoints. " + DOCS)
    app.state.settings = settings
    app.state.studio = Studio(settings)
    app.state.queue = JobQueue(settings.store("queue.sqlite"))
    app.state.users = UserStore(settings.store("users.sqlite"))
    app.state.brands = BrandStore(settings.store("brands.sqlite"), settings.home / "brands")
    app.state.events = EventLog()
    app.state.webhook_secret = server_secret(settings.home)
    app.state.webhooks = WebhookSender(app.state.queue, app.state.webhook_secret)
    app.state.events.listeners.append(app.state.webhooks.on_event)
    app.state.workers = []
    app.state.cluster = None
    app.state.pruner = None  # retention.Pruner, started with the app when DESIGNERBOX_JOB_RETENTION_DAYS is set
    if broker is not None:
        from designerbox.server.cluster import ClusterDispatch

        app.state.cluster = ClusterDispatch(broker, app.state.queue, app.state.events)
        app.state.events.dispatchers.append(app.state.cluster.send)
    app.state.a1111_checkpoint = {}  # user -> A1111's sd_model_checkpoint option; none: the default model

    for module in (generations, tools, jobs, events, images, models, presets, users, brands):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(openai_compat.router)
    app.include_router(a1111.router)
    _error_handlers(app)
    static = resources.files("designerbox.server").joinpath("static")
    app.mount("/", StaticFiles(directory=str(static), html=True), name="web")
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def _detail(message: str, loc: list | None = None, kind: str = "value_error") -> dict:
    return {"detail": [{"loc": loc or ["body"], "msg": message, "type": kind}]}


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, err: RequestValidationError):
        if request.url.path.startswith("/v1/"):
            return openai_compat.error_response(err)
        errors = []
        for e in err.errors():
            msg = str(e.get("msg", "")).removeprefix("Value error, ")
            if e.get("type") == "extra_forbidden" and request.url.path in BODY_FIELDS:
                msg = f"unknown field {e['loc'][-1]!r}; valid fields: {', '.join(BODY_FIELDS[request.url.path])}"
            errors.append({"loc": list(e.get("loc", [])), "msg": msg, "type": e.get("type", "value_error")})
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.exception_handler(InvalidRequest)
    async def invalid(request: Request, err: InvalidRequest):
        loc = ["body", err.field] if err.field else ["body"]
        return JSONResponse(status_code=422, content=_detail(str(err), loc))

    @app.exception_handler(AuthError)
    async def unauthorized(request: Request, err: AuthError):
        headers = {"WWW-Authenticate": "Bearer"}
        if request.url.path.startswith("/v1/"):
            return openai_compat.openai_error(str(err), None, 401, "invalid_request_error", headers=headers)
        return JSONResponse(status_code=401, content={"detail": str(err)}, headers=headers)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, err: Forbidden):
        return JSONResponse(status_code=403, content={"detail": str(err)})

    @app.exception_handler(QuotaExceeded)
    async def too_many(request: Request, err: QuotaExceeded):
        headers = {"Retry-After": str(err.retry_after)}
        if request.url.path.startswith("/v1/"):
            return openai_compat.openai_error(str(err), None, 429, "rate_limit_exceeded", headers=headers)
        return JSONResponse(status_code=429, content={"detail": str(err)}, headers=headers)

    @app.exception_handler(ImageTooLarge)
    async def image_too_large(request: Request, err: ImageTooLarge):
        if request.url.path.startswith("/v1/"):
            return openai_compat.openai_error(str(err), err.field, 413)
        return JSONResponse(status_code=413, content=_detail(str(err), ["body", err.field]))

    @app.exception_handler(UserError)
    async def bad_user(request: Request, err: UserError):
        return JSONResponse(status_code=422, content=_detail(str(err)))

    @app.exception_handler(UnknownModelError)
    async def unknown_model(request: Request, err: UnknownModelError):
        return JSONResponse(status_code=404, content={"detail": str(err)})

    @app.exception_handler(UnknownToolError)
    async def unknown_tool(request: Request, err: UnknownToolError):
        return JSONResponse(status_code=404, content={"detail": str(err)})

    @app.exception_handler(BrandError)
    async def bad_brand(request: Request, err: BrandError):
        if isinstance(err, UnknownBrandError):
            return JSONResponse(status_code=404, content={"detail": str(err)})
        return JSONResponse(status_code=422, content=_detail(str(err)))

    @app.exception_handler(UnknownJobError)
    @app.exception_handler(UnknownImageError)
    @app.exception_handler(UnknownUserError)
    async def not_found(request: Request, err: KeyError):
        return JSONResponse(status_code=404, content={"detail": err.args[0]})

    @app.exception_handler(JobStateError)
    async def conflict(request: Request, err: JobStateError):
        return JSONResponse(status_code=409, content={"detail": str(err)})
