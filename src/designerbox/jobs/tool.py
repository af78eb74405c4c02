"""One tool job, as every front door runs it (CLI, Python, later the REST API):

    run_tool(name, inputs, options, preset) -> [ToolOutput]     (each recorded in the gallery)
    export(outputs, out, as_zip=False) -> [paths]                 (atomic files or one atomic zip)

1. the tool and its options: a preset's options overlaid by explicit ones, validated (errors name
   the valid choices);
2. the inputs, each through the safe loader (tools/image_input.py); or, for a tool with a prompt
   option and no input, an image drawn first by the built-in model through the Studio;
3. the tool runs once per input; every output gets a record like a generation's: the tool, its
   version and code hash, the resolved options and preset, the input's name and sha256, what the
   tool found, the timings and the versions. The PNG carries it, the gallery stores it.
"""

from __future__ import annotations

import io
import json
import platform
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from designerbox.store.png_metadata import encode_png, write_atomic
from designerbox.tools.image_input import MAX_PIXELS, LoadedImage, load_image
from designerbox.tools.registry import Tool, get_tool

if TYPE_CHECKING:
    from designerbox.studio import Studio

Input = str | Path | bytes | tuple[str, bytes]


class ToolRequestError(ValueError):
    """A tool call that cannot run as asked (no input, too many, a prompt for a tool without one)."""


@dataclass
class ToolOutput:
    name: str                   # the output's label, e.g. "instagram-post"
    image: Image.Image
    record: dict
    png: bytes
    id: str | None = None       # gallery id once saved
    path: str | None = None     # where it was written or stored


def run_tool(name: str, inputs: list[Input] | None = None, options: dict | None = None, preset: str | None = None,
             *, studio: "Studio | None" = None, save: bool = True, max_pixels: int = MAX_PIXELS) -> list[ToolOutput]:
    """Run a tool on each input (paths, bytes, or (name, bytes)); returns every output with its record."""
    t0 = time.perf_counter()
    # 1. the tool and its options
    tool = get_tool(name)
    opts = tool.resolve(options, preset)
    prompt = getattr(opts, tool.prompt_field) if tool.prompt_field else None
    inputs = list(inputs or [])
    if prompt and inputs:
        raise ToolRequestError(f"give the {name} tool input images or a prompt, not both")
    if not inputs and not prompt:
        raise ToolRequestError(f"the {name} tool needs at least one input image"
                               + (" or a prompt" if tool.prompt_field else ""))
    # 2. the inputs
    loaded: list[LoadedImage] = []
    generated = None
    if prompt:
        studio = studio or _studio()
        generated = _draw(studio, prompt, opts, save)
        loaded.append(LoadedImage(image=generated.image.convert("RGB"), source={
            "generated": generated.id, "prompt": prompt, "model": generated.record["model"]["id"],
            "seed": generated.record["seed"], "size": list(generated.image.size)}))
    for src in inputs:
        data, label = (src[1], src[0]) if isinstance(src, tuple) else (src, None)
        loaded.append(load_image(data, name=label, max_pixels=max_pixels))
    t_load = time.perf_counter() - t0
    # 3. run, once per input
    outputs = []
    needs_models = tool.uses_models(opts) if callable(tool.uses_models) else tool.uses_models
    ctx = StudioContext(studio or _studio()) if needs_models else None
    for item in loaded:
        t1 = time.perf_counter()
        results = tool.run(item.image, opts, ctx) if ctx is not None else tool.run(item.image, opts)
        t_run = time.perf_counter() - t1
        if preset and len(results) == 1:
            results[0].name = preset  # one output per input: it is named after the preset asked for
        for res in results:
            record = _record(tool, opts, preset, options or {}, item, res, prompt,
                             {"load_s": round(t_load, 3), "tool_s": round(t_run, 3),
                              "total_s": round(time.perf_counter() - t0, 3)})
            outputs.append(ToolOutput(name=res.name, image=res.image, record=record, png=png_bytes(res.image, record)))
    if save:
        gallery = (ctx.studio if ctx is not None else studio or _studio()).gallery
        for out in outputs:
            row = gallery.add(out.png, out.record)
            out.id, out.path = row.id, str(gallery.file(row))
    return outputs


def _studio() -> "Studio":
    from designerbox.studio import Studio

    return Studio()


class StudioContext:
    """The ToolContext (tools/registry.py) of a tool with `uses_models`: the Studio's registry, model
    cache and generation path, nothing else."""

    def __init__(self, studio: "Studio"):
        self.studio = studio

    def installed(self, kind: str, families: tuple[str, ...] | None = None) -> list[str]:
        return [m.id for m in self.studio.registry.list(kind=kind) if families is None or m.family in families]

    def model(self, model_id: str):
        return self.studio.model(model_id)

    def img2img(self, image: Image.Image, *, prompt: str, model: str, strength: float, style: str | None = None,
                negative_prompt: str = "", seed: int | None = None) -> tuple[Image.Image, dict]:
        """One image to image generation (not saved: the tool's output is what the gallery records)."""
        import base64

        from designerbox.jobs.schema import GenerationRequest

        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
        request = GenerationRequest(prompt=prompt, negative_prompt=negative_prompt, model=model, style=style,
                                    seed=seed, strength=strength, init_image="data:image/png;base64,"
                                    + base64.b64encode(buf.getvalue()).decode())
        out = self.studio.generate(request, save=False)[0]
        return out.image, out.record

    def outpaint(self, image: Image.Image, extend: tuple[float, float, float, float], *, prompt: str, model: str,
                 seed: int | None = None, negative_prompt: str = "", side: int | None = None) -> tuple[Image.Image, dict]:
        """The image on a canvas larger by `extend` (left, top, right, bottom, in the image's pixels), the border
        drawn by `model` through the generation path's outpainting (as `generate --init-image --extend`: the
        border, and a few pixels into the picture, inpainted). First the picture and border are scaled, up or
        down, so the canvas is what the model draws well: its long side `side` (default 1.5x the model's
        native side; at most its max_size), its short side at least its min_size, both multiples of its
        size_multiple. Returns (the canvas, its generation record), the record's "outpaint" saying where the
        picture lies in the canvas."""
        import base64

        from designerbox.jobs.schema import GenerationRequest

        m = self.studio.registry.get(model)
        if m.kind != "diffusion" or m.defaults is None:
            raise ValueError(f"model {model!r} is a {m.kind} model and cannot outpaint; installed diffusion models: "
                             f"{', '.join(self.installed('diffusion')) or 'none'}")
        w, h = image.size
        left, top, right, bottom = (max(0.0, float(e)) for e in extend)
        W0, H0 = w + left + right, h + top + bottom
        scale = min(m.max_size, side or int(1.5 * max(m.native_size))) / max(W0, H0)
        if min(W0, H0) * scale < m.min_size:  # a small picture is enlarged to what the model draws
            scale = m.min_size / min(W0, H0)
        k = m.size_multiple
        pw, ph = max(1, round(w * scale)), max(1, round(h * scale))
        W, H = (max(-(-pw // k) * k, round(W0 * scale / k) * k), max(-(-ph // k) * k, round(H0 * scale / k) * k))
        if max(W, H) > m.max_size or min(W, H) < m.min_size:
            raise ValueError(f"model {model!r} draws sides of {m.min_size} to {m.max_size} px: it cannot draw the "
                             f"{W}x{H} canvas this outpainting needs (aspect {W0 / H0:.3f}); choose a Stable "
                             f"Diffusion model (installed diffusion models: {', '.join(self.installed('diffusion'))})")
        # the rounding slack goes to the sides that grow, in proportion (both sides when neither does)
        dx, dy = W - pw, H - ph
        L = round(dx * left / (left + right)) if left + right else dx // 2
        T = round(dy * top / (top + bottom)) if top + bottom else dy // 2
        if dx == dy == 0:
            raise ValueError(f"nothing to outpaint: the {w}x{h} picture already fills the {W}x{H} canvas")
        buf = io.BytesIO()
        image.convert("RGB").resize((pw, ph), Image.LANCZOS).save(buf, format="PNG")
        request = GenerationRequest(prompt=prompt, negative_prompt=negative_prompt, model=model, seed=seed,
                                    init_image="data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
                                    extend=(L, T, dx - L, dy - T))
        out = self.studio.generate(request, save=False)[0]
        return out.image, dict(out.record, outpaint={"scale": round(scale, 5), "picture": [L, T, pw, ph],
                                                     "extend": [L, T, dx - L, dy - T], "canvas": [W, H]})

    def txt2img(self, prompt: str, *, model: str | None = None, width: int | None = None, height: int | None = None,
                seed: int | None = None, style: str | None = None, negative_prompt: str = "") -> tuple[Image.Image, dict]:
        """One generation from a prompt (not saved, as img2img)."""
        from designerbox.jobs.schema import GenerationRequest

        request = GenerationRequest(prompt=prompt, negative_prompt=negative_prompt, model=model, style=style,
                                    seed=seed, width=width, height=height)
        out = self.studio.generate(request, save=False)[0]
        return out.image, out.record


def _draw(studio: "Studio", prompt: str, opts, save: bool):
    """One image from the prompt, square at the largest side the sizes need (the model's own
    upscaler cascade or Lanczos does the rest, as for `generate --preset`)."""
    from designerbox.jobs.schema import GenerationRequest

    request = GenerationRequest(prompt=prompt, model=getattr(opts, "model", None), seed=getattr(opts, "seed", None),
                                width=1024, height=1024)
    return studio.generate(request, save=save)[0]


def _record(tool: Tool, opts, preset: str | None, given: dict, item: LoadedImage, res, prompt: str | None,
            timings: dict) -> dict:
    code_hash = tool.sha256()
    label = item.source.get("file") or f"a drawn image ({prompt!r})"
    return {
        "task": "tool",
        "tool": {"name": tool.name, "version": tool.version, "output": res.name, "preset": preset},
        # the "model" of a tool's image is the tool's code and preset data, hashed: what made the pixels
        "model": {"id": f"tool:{tool.name}", "name": f"{tool.name} tool {tool.version}", "kind": "tool",
                  "sha256": code_hash, "hash": code_hash[:10], "licence": "MIT"},
        "request": {"prompt": prompt or f"{tool.name} {res.name} from {label}", "tool": tool.name, "preset": preset,
                    "options": given},
        "options": opts.model_dump(mode="json"),
        "seed": getattr(opts, "seed", None) or 0,
        "input": item.source,
        "details": _jsonable(res.details),
        "output_size": list(res.image.size), "mode": res.image.mode,
        "timings": timings, "seconds": timings["total_s"],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
    }


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def versions() -> dict[str, str]:
    import cv2
    import numpy
    import PIL

    from designerbox import __version__

    return {"designerbox": __version__, "numpy": numpy.__version__, "pillow": PIL.__version__,
            "opencv": cv2.__version__, "python": platform.python_version()}


def png_bytes(image: Image.Image, record: dict) -> bytes:
    """PNG with the record, and a `parameters` line that PNG-info readers show."""
    t = record["tool"]
    return encode_png(image, f"Tool: {t['name']} {t['version']}, Output: {t['output']}, "
                             f"Preset: {t['preset'] or '-'}, Size: {'x'.join(map(str, record['output_size']))}, "
                             f"Model: {record['model']['id']}, Model hash: {record['model']['hash']}, "
                             f"Version: designerbox {record['versions']['designerbox']}", record)


def file_names(outputs: list[ToolOutput]) -> list[str]:
    """<input stem>-<tool>-<output>.png, unique within the call."""
    names, seen = [], set()
    for o in outputs:
        src = o.record["input"].get("file") or f"drawn-{o.record['input'].get('seed', 0)}"
        base = f"{Path(src).stem}-{o.record['tool']['name']}-{o.name}"
        name, k = f"{base}.png", 2
        while name in seen:
            name, k = f"{base}-{k}.png", k + 1
        seen.add(name)
        names.append(name)
    return names


def export(outputs: list[ToolOutput], out: Path, as_zip: bool = False) -> list[Path]:
    """Write the outputs atomically: into a folder, to one .png (a single output), or as one .zip
    (`as_zip=True` or a .zip path: written to a temporary file, then renamed). Returns the paths."""
    out = Path(out)
    names = file_names(outputs)
    if as_zip or out.suffix.lower() == ".zip":
        target = out if out.suffix.lower() == ".zip" else out / f"{Path(names[0]).stem.rsplit('-', 1)[0]}.zip"
        target.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:  # PNGs are compressed already
            for name, o in zip(names, outputs):
                z.writestr(name, o.png)
        write_atomic(target, buf.getvalue())
        return [target]
    if out.suffix.lower() == ".png":
        if len(outputs) != 1:
            raise ToolRequestError(f"{len(outputs)} outputs cannot go to one file {out}: give a folder or a .zip")
        targets = [out]
    elif out.suffix:
        raise ToolRequestError(f"output {out} must be a folder, a .png file (one output) or a .zip file")
    else:
        targets = [out / n for n in names]
    targets[0].parent.mkdir(parents=True, exist_ok=True)
    for o, target in zip(outputs, targets):
        write_atomic(target, o.png)
        o.path = str(target)
    return targets

