"""Tool jobs: a creation tool (tools/registry.py) queued and run like a generation.

    POST /api/v1/tools/{name}  --check tool, options, preset, inputs; quota-->  job (kind "tool")
    worker                     --jobs.tool.run_tool, one input at a time-->    outputs in the owner's gallery

Every tool in the registry is reachable: nothing here names one. At submit, the tool, its options
(a preset's overlaid by explicit ones) and each uploaded image are checked, so a bad request is a
4xx naming the valid choices, never a failed job. Uploaded images are kept as files under the
gallery folder (`inputs/ab/<sha256>`, written atomically; a cluster shares that folder), and the
queued request holds their names and hashes, not their bytes: a retry runs on the same files.
Images inside the options (the style tool's style_image, a brand kit's logo: data URLs, at any depth) go
the same way: each is checked as an upload, stored once under its sha256, and queued as a reference
{"sha256": ..., "bytes": N}; the worker hands the tool that file's path (`resolve_option_images`).
A tool that can start from a prompt (its `prompt_field`) gets its seed fixed here, as a generation does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from pathlib import Path
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from designerbox.presets import UnknownPresetError
from designerbox.server.events import EventLog
from designerbox.server.queue import JobQueue, JobRow
from designerbox.server.submit import ImageTooLarge, InvalidRequest, admission
from designerbox.server.webhooks import CallbackURLError, check_callback_url
from designerbox.store.png_metadata import write_atomic
from designerbox.store.users import User
from designerbox.studio import Studio
from designerbox.tools.image_input import ImageInputError, load_image
from designerbox.tools.registry import TOOL_MODULES, Tool, get_tool

MAX_INPUTS = 16
DATA_URL = re.compile(r"data:[^,\s]*,")   # a data URL's head, e.g. "data:image/png;base64,"
SHA256 = re.compile(r"[0-9a-f]{64}")


class ToolInput(BaseModel):
    name: str                  # the uploaded file's name (records and output file names use it)
    sha256: str
    path: str                  # relative to the gallery folder
    bytes: int


class ToolJobRequest(BaseModel):
    """A tool job as queued (JobRow.request of kind "tool")."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    inputs: list[ToolInput] = Field(default_factory=list)
    options: dict = Field(default_factory=dict)   # as given (validated at submit), seed fixed for prompt tools,
                                                  # images as {"sha256", "bytes"} references to input files
    preset: str | None = None


def tool_public(tool: Tool) -> dict:
    """GET /api/v1/tools: what a client needs to build a form for the tool."""
    return {"name": tool.name, "version": tool.version, "summary": tool.summary,
            "prompt_field": tool.prompt_field, "options": tool.options.model_json_schema(),
            "presets": [{"id": pid, "name": p.get("name", pid), "options": p["options"]}
                        for pid, p in tool.presets().items()]}


def all_tools() -> list[dict]:
    """Every tool of the registry; one that cannot be loaded here (a package it needs is missing, a preset
    file does not validate) is listed with its name and the error instead of taking the list down."""
    out = []
    for name in TOOL_MODULES:
        try:
            out.append(tool_public(get_tool(name)))
        except (ImportError, ValueError) as err:  # pydantic's ValidationError is a ValueError
            out.append({"name": name, "error": f"{type(err).__name__}: {err}"})
    return out


def resolve_options(tool: Tool, options: dict, preset: str | None) -> BaseModel:
    """The tool's options model, or InvalidRequest naming the bad option and the valid ones."""
    try:
        return tool.resolve(options, preset)
    except UnknownPresetError as err:
        raise InvalidRequest(str(err), "preset") from None
    except ValidationError as err:
        parts = []
        for e in err.errors():
            where = ".".join(str(x) for x in e.get("loc", ())) or "options"
            if e.get("type") == "extra_forbidden":
                parts.append(f"unknown option {where!r}; valid options: {', '.join(tool.options.model_fields)}")
            else:
                parts.append(f"option {where}: {str(e.get('msg', '')).removeprefix('Value error, ')}")
        raise InvalidRequest(f"the {tool.name} tool: " + "; ".join(parts), "options") from None


def refuse_server_paths(value, where: str = "options") -> None:
    """Some tools take an image by path in their options (a style picture, a brand kit's logo): over the
    API that would read files on the server (another user's gallery, say). Any option value, at any depth,
    that names an existing file or folder here is refused, and so is one shaped as a stored image's
    reference (only the server writes those, from data URLs); images go in as data URLs."""
    if is_image_ref(value):
        raise InvalidRequest(f"{where}: stored images are not named in a request; give an image as a data URL "
                             "(data:image/png;base64,...)", "options")
    if isinstance(value, dict):
        for k, v in value.items():
            refuse_server_paths(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            refuse_server_paths(v, f"{where}[{i}]")
    elif isinstance(value, str) and not value.startswith("data:") and 0 < len(value) < 4096:
        try:
            exists = Path(value).expanduser().exists()
        except (OSError, ValueError, RuntimeError):  # not a path at all (a NUL byte, no home for ~user)
            exists = False
        if exists:
            raise InvalidRequest(f"{where}: file paths are not read on the server; give an image as a data URL "
                                 "(data:image/png;base64,...)", "options")


def decode_data_url(value: str, field: str, limit: int) -> bytes:
    """A data URL's bytes; InvalidRequest for anything else, ImageTooLarge over `limit` (before decoding)."""
    if not isinstance(value, str) or not value.startswith("data:"):
        raise InvalidRequest(f"{field}: give images as data URLs (data:image/png;base64,...) or upload them as "
                             "multipart/form-data files; file paths are not read on the server", field)
    header, _, payload = value.partition(",")
    if ";base64" not in header:
        raise InvalidRequest(f"{field}: a data URL must be base64 (data:image/png;base64,...)", field)
    size = len(payload) * 3 // 4
    if limit and size > limit:
        raise ImageTooLarge(f"{field} is about {size} bytes, over this server's limit of {limit} bytes per image "
                            "(DESIGNERBOX_MAX_IMAGE_BYTES)", field)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{field}: the data URL's base64 payload does not decode", field) from None


def check_upload(name: str, data: bytes, field: str, limit: int) -> None:
    """Within the byte limit and readable as an image (header and pixels), else a 413 / 422 naming why."""
    if limit and len(data) > limit:
        raise ImageTooLarge(f"{field} ({name}) is {len(data)} bytes, over this server's limit of {limit} bytes "
                            "per image (DESIGNERBOX_MAX_IMAGE_BYTES)", field)
    try:
        load_image(data, name=name)
    except ImageInputError as err:
        raise InvalidRequest(f"{field}: {err}", field) from None


def input_file(sha: str) -> Path:
    """Where an uploaded image is kept, relative to the gallery folder."""
    return Path("inputs") / sha[:2] / sha


def store_input(root: Path, name: str, data: bytes) -> ToolInput:
    """The upload under root/inputs/ab/<sha256> (atomically; once)."""
    sha = hashlib.sha256(data).hexdigest()
    rel = input_file(sha)
    path = root / rel
    if path.exists():
        path.touch()  # "in use now": retention.prune keeps an input touched within the hour
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
    return ToolInput(name=Path(name).name or "upload", sha256=sha, path=str(rel), bytes=len(data))


def is_image_ref(value) -> bool:
    """{"sha256": <64 hex>, "bytes": N}: an option image stored by `option_images`."""
    return (isinstance(value, dict) and set(value) == {"sha256", "bytes"} and isinstance(value["sha256"], str)
            and SHA256.fullmatch(value["sha256"]) is not None)


def option_images(value, limit: int, found: dict[str, bytes], where: str = "options"):
    """`value` with every data URL in it (any depth) decoded and checked as an upload (a 422 / 413 naming where
    it is) and replaced by its reference {"sha256", "bytes"}; the bytes go into `found` by sha256, to be stored."""
    if isinstance(value, dict):
        return {k: option_images(v, limit, found, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [option_images(v, limit, found, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and DATA_URL.match(value):
        data = decode_data_url(value, where, limit)
        check_upload(where, data, where, limit)
        sha = hashlib.sha256(data).hexdigest()
        found[sha] = data
        return {"sha256": sha, "bytes": len(data)}
    return value


def resolve_option_images(root: Path, value, paths: dict[str, dict]):
    """Queued options with each image reference replaced by its file's path under root/inputs (built from the
    hash alone); `paths` gets path -> reference, to show the reference again in the records."""
    if is_image_ref(value):
        path = root / input_file(value["sha256"])
        if not path.is_file():
            raise ValueError(f"an image of this job's options ({value['sha256'][:16]}) is no longer on the server; "
                             "submit the job again with the image")
        paths[str(path)] = value
        return str(path)
    if isinstance(value, dict):
        return {k: resolve_option_images(root, v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_option_images(root, v, paths) for v in value]
    return value


def show_refs(value, paths: dict[str, dict]):
    """A record with the server paths of `resolve_option_images` (or a tool's cut of one, as style's details
    keep 200 characters) put back as their references: records name no server folders."""
    if isinstance(value, dict):
        return {k: show_refs(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [show_refs(v, paths) for v in value]
    if isinstance(value, str) and len(value) >= 64:
        for path, ref in paths.items():
            if path.startswith(value):
                return ref
    return value


def submit_tool(studio: Studio, queue: JobQueue, events: EventLog, name: str, uploads: list[tuple[str, bytes]],
                options: dict | None = None, preset: str | None = None, *, user: User, priority: int = 0,
                source: str = "api", callback_url: str | None = None) -> JobRow:
    """Check and queue a tool job; uploads are (file name, bytes) already within the byte limit."""
    tool = get_tool(name)  # UnknownToolError (a 404 naming the tools)
    if not isinstance(options, dict):
        raise InvalidRequest(f"options must be a JSON object of the {tool.name} tool's options; valid options: "
                             f"{', '.join(tool.options.model_fields)}", "options")
    options = dict(options)
    refuse_server_paths(options)
    opts = resolve_options(tool, options, preset)
    prompt = getattr(opts, tool.prompt_field) if tool.prompt_field else None
    if len(uploads) > MAX_INPUTS:
        raise InvalidRequest(f"{len(uploads)} input images; at most {MAX_INPUTS} in one job", "inputs")
    if prompt and uploads:
        raise InvalidRequest(f"give the {tool.name} tool input images or a prompt ({tool.prompt_field}), not both",
                             "inputs")
    if not prompt and not uploads:
        raise InvalidRequest(f"the {tool.name} tool needs at least one input image"
                             + (f" or a prompt (option {tool.prompt_field!r})" if tool.prompt_field else ""), "inputs")
    if prompt and "seed" in tool.options.model_fields and getattr(opts, "seed", None) is None:
        options["seed"] = secrets.randbelow(2**32)  # fixed now: a re-run draws the same image
    limit = studio.settings.max_image_bytes
    for i, (fname, data) in enumerate(uploads):
        check_upload(fname, data, f"inputs[{i}]", limit)
    images: dict[str, bytes] = {}
    options = option_images(options, limit, images)
    if callback_url is not None:
        try:
            check_callback_url(callback_url, studio.settings.webhook_hosts)
        except CallbackURLError as err:
            raise InvalidRequest(str(err), "callback_url") from None
    root = studio.settings.gallery_root
    for sha, data in images.items():
        store_input(root, sha, data)
    request = ToolJobRequest(tool=tool.name, inputs=[store_input(root, f, d) for f, d in uploads],
                             options=options, preset=preset)
    row = queue.submit(request.model_dump(mode="json"), user=user.name, priority=priority, source=source,
                       callback_url=callback_url, kind="tool", admit=admission(studio, user))
    events.publish(row.id, "queued", priority=priority)
    events.wakeup.set()
    return row


def run_tool_job(studio: Studio, request: dict, progress: Callable[[dict], None]) -> list:
    """Run a queued tool job (no gallery writes: the worker stores the outputs under the job's owner).
    progress({"i", "total"}) is called after each input; it raises to stop (cancel, shutdown)."""
    from designerbox.jobs.tool import run_tool

    req = ToolJobRequest(**request)
    root = studio.settings.gallery_root
    paths: dict[str, dict] = {}
    options = resolve_option_images(root, req.options, paths)
    if not req.inputs:  # the tool draws its own input from a prompt
        outputs = run_tool(req.tool, [], options, req.preset, studio=studio, save=False)
        progress({"i": 0, "total": 1})
        return _shown(outputs, paths)
    outputs = []
    for i, item in enumerate(req.inputs):
        data = (root / item.path).read_bytes()
        outputs += _shown(run_tool(req.tool, [(item.name, data)], options, req.preset, studio=studio, save=False),
                          paths)
        progress({"i": i, "total": len(req.inputs)})
    return outputs


def _shown(outputs: list, paths: dict[str, dict]) -> list:
    """The outputs with their records (and the PNGs that carry them) naming option images by reference."""
    from designerbox.jobs.tool import png_bytes

    if paths:
        for out in outputs:
            out.record = show_refs(out.record, paths)
            out.png = png_bytes(out.image, out.record)
    return outputs
