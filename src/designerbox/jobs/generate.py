"""One generation, as every front door runs it: resolve the request, draw, record.

    request (schema) --resolve--> ResolvedRequest --draw--> images --record--> PNG bytes + record
"""

from __future__ import annotations

import platform
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from PIL import Image

from designerbox import presets
from designerbox.jobs.schema import GenerationRequest, ResolvedRequest
from designerbox.pipelines.gan_generate import gan_text_to_image
from designerbox.pipelines.resize import fill_size, fit_to_size
from designerbox.pipelines.stable_diffusion import LatentDiffusion, sd_text_to_image
from designerbox.pipelines.flux import Flux, flux_text_to_image
from designerbox.pipelines.stable_diffusion_3 import StableDiffusion3, sd3_text_to_image
from designerbox.pipelines.stable_diffusion_xl import LatentDiffusionXL, sdxl_text_to_image
from designerbox.pipelines.text_to_image import text_to_image, to_pil
from designerbox.registry.licences import flag
from designerbox.registry.manifest import ModelManifest
from designerbox.store.png_metadata import png_bytes


class RequestError(ValueError):
    """The request cannot run on the chosen model (wrong kind, size out of range...)."""


@dataclass
class GeneratedImage:
    image: Image.Image
    record: dict
    png: bytes
    id: str | None = None      # gallery id, once stored
    path: str | None = None    # where the caller wrote it


def resolve(req: GenerationRequest, manifest: ModelManifest, upscaler: str = "none",
            inputs: dict | None = None) -> ResolvedRequest:
    """Fill every field the request left open from the model's manifest; check it fits the model.

    upscaler   the id of the upscaler the caller chose for this request ("none": plain resizing)
    inputs     {"init_image": LoadedImage, "mask_image": LoadedImage} read from the request's fields"""
    inputs = inputs or {}
    if not (manifest.kind == "gan" or (manifest.kind == "diffusion" and manifest.defaults is not None)):
        raise RequestError(f"model {manifest.id!r} is a {manifest.kind} model, not a text-to-image model")
    check_family_options(req, manifest)
    if req.style is not None:
        presets.get_style(req.style)  # raises with the valid styles
    if req.size_preset is not None or req.outpaint_to is not None:
        size = presets.get_size(req.size_preset or req.outpaint_to)
        width, height = size.width, size.height
    elif req.width is not None:
        width, height = req.width, req.height
    elif "init_image" in inputs:  # image to image keeps the input's size (to a multiple of 8)
        w, h = inputs["init_image"].image.size
        width, height = max(16, w // 8 * 8), max(16, h // 8 * 8)
    else:
        width, height = manifest.default_size or manifest.native_size
    if min(width, height) < manifest.min_size:
        raise RequestError(f"model {manifest.id!r} draws images of at least {manifest.min_size}x{manifest.min_size}; "
                           f"asked for {width}x{height}")
    seed = secrets.randbelow(2**32) if req.seed is None else req.seed
    if manifest.kind == "gan":
        if req.init_image is not None:
            raise RequestError(f"model {manifest.id!r} is a GAN: it draws from a latent and takes no init_image "
                               "or mask_image; use a diffusion model for image to image and inpainting")
        truncation = req.truncation if req.truncation is not None else (manifest.truncation or 1.0)
        return ResolvedRequest(
            prompt=req.prompt, negative_prompt="", model=manifest.id, width=width, height=height,
            size_preset=req.size_preset, steps=None, sampler=None, schedule=None, cfg_scale=None,
            truncation=truncation, seed=seed, batch_size=req.batch_size, style=req.style, upscaler=upscaler)
    d = manifest.defaults
    return ResolvedRequest(
        prompt=req.prompt, negative_prompt=req.negative_prompt, model=manifest.id, width=width, height=height,
        size_preset=req.size_preset, steps=req.steps or d.steps, sampler=req.sampler or d.sampler,
        schedule=req.schedule or d.schedule, cfg_scale=d.cfg_scale if req.cfg_scale is None else req.cfg_scale,
        seed=seed, batch_size=req.batch_size, style=req.style, upscaler=upscaler,
        init_image=inputs["init_image"].source if "init_image" in inputs else None,
        mask_image=inputs["mask_image"].source if "mask_image" in inputs else None,
        extend=req.extend, outpaint_to=req.outpaint_to, loras=req.loras, refiner=req.refiner,
        refiner_strength=(req.refiner_strength or REFINER_STRENGTH) if req.refiner else None,
        strength=(req.strength or (1.0 if "mask_image" in inputs else 0.75)) if req.init_image else None)


REFINER_STRENGTH = 0.25  # the refiner's default share of the schedule (A1111's "switch at" 0.75)

# request fields that only one family has: a GAN draws in one call from a latent, with no sampler
DIFFUSION_ONLY = {"steps": "sampling steps", "sampler": "a sampler", "schedule": "a noise schedule",
                  "cfg_scale": "classifier-free guidance", "negative_prompt": "a negative prompt"}
GAN_ONLY = {"truncation": "truncation (psi)"}


def check_family_options(req: GenerationRequest, manifest: ModelManifest) -> None:
    """Raise RequestError naming each option the request set that the model's family does not have."""
    own, other = (DIFFUSION_ONLY, GAN_ONLY) if manifest.kind == "gan" else (GAN_ONLY, DIFFUSION_ONLY)
    given = [k for k in own if getattr(req, k) not in (None, "")]
    if given:
        what = "a GAN: it draws in one network call" if manifest.kind == "gan" else "a diffusion model"
        names = ", ".join(f"{k}={getattr(req, k)!r} ({own[k]})" for k in given)
        valid = "truncation" if manifest.kind == "gan" else "steps, sampler, schedule, cfg_scale, negative_prompt"
        raise RequestError(f"model {manifest.id!r} is {what} and has no {names}; leave "
                           f"{'it' if len(given) == 1 else 'them'} out (its own options: {valid})")


def draw_size(r: ResolvedRequest, manifest: ModelManifest) -> tuple[int, int]:
    """The size the network draws at: the asked size when the model can draw it, else its native size."""
    m = manifest
    if m.kind == "gan":  # a generator has one output size
        return m.native_size
    if max(r.width, r.height) <= m.max_size and r.width % m.size_multiple == 0 and r.height % m.size_multiple == 0:
        return r.width, r.height
    return m.native_size


def request_from_record(record: dict) -> tuple[GenerationRequest, int]:
    """The request that reproduces a recorded image, and the image's index in its batch."""
    r = dict(record["request"])
    if r.get("size_preset"):
        r.pop("width"), r.pop("height")
    if r.get("init_image"):
        src = r["init_image"].get("file", "the input image")
        raise RequestError(f"this image was drawn from an input image ({src}, sha256 "
                           f"{r['init_image'].get('sha256', '?')[:12]}); give it again with --init-image")
    for key in ("init_image", "mask_image", "extend", "strength", "outpaint_to"):
        r.pop(key, None)
    return GenerationRequest(**r), int(record.get("batch_index", 0))


def read_input_image(value: str, what: str):
    """A request's image field (a file path or a data URL) -> LoadedImage; RequestError naming the problem."""
    import base64
    import binascii

    from designerbox.tools.image_input import ImageInputError, load_image

    try:
        if value.startswith("data:"):
            header, _, payload = value.partition(",")
            if ";base64" not in header:
                raise RequestError(f"{what}: a data URL must be base64 (data:image/png;base64,...)")
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise RequestError(f"{what}: the data URL's base64 payload does not decode") from None
            return load_image(data, name=what)
        return load_image(Path(value).expanduser(), name=f"{what} {value}")
    except ImageInputError as err:
        raise RequestError(str(err)) from None


def outpaint_inputs(init, extend: tuple[int, int, int, int], overlap: int = 4) -> dict:
    """{"init_image", "mask_image"} for outpainting: the picture on a canvas larger by `extend` (left,
    top, right, bottom), the new border filled by stretching the picture's edge pixels outwards and
    blurring them (a start with the right colours), and a mask of the border plus `overlap` pixels
    into the picture so the seam is redrawn too."""
    from dataclasses import replace

    from PIL import ImageFilter

    left, top, right, bottom = extend
    img = init.image.convert("RGB")
    w, h = img.size
    W, H = w + left + right, h + top + bottom
    import numpy as np

    a = np.asarray(img)
    canvas = np.pad(a, ((top, bottom), (left, right), (0, 0)), mode="edge")  # edge pixels stretched out
    blurred = np.asarray(Image.fromarray(canvas).filter(ImageFilter.GaussianBlur(max(2, max(extend) // 8))))
    keep = np.zeros((H, W), bool)
    keep[top:top + h, left:left + w] = True
    canvas = np.where(keep[..., None], canvas, blurred)
    mask = np.full((H, W), 255, np.uint8)
    inner = [top + (overlap if top else 0), left + (overlap if left else 0),
             top + h - (overlap if bottom else 0), left + w - (overlap if right else 0)]
    mask[inner[0]:inner[2], inner[1]:inner[3]] = 0
    source = {"generated": "outpainting border", "extend": list(extend), "overlap": overlap, "size": [W, H]}
    return {"init_image": replace(init, image=Image.fromarray(canvas)),
            "mask_image": replace(init, image=Image.fromarray(mask, "L"), source=source, notes=[])}


def outpaint_plan(size: tuple[int, int], target: tuple[int, int], manifest: ModelManifest) -> tuple[float, tuple]:
    """How to outpaint a picture of `size` to the aspect of `target` (w, h): (scale, extend). The picture
    is first scaled by `scale` (< 1 only when the canvas would pass the model's max_size), then the
    border extend = (left, top, right, bottom) is added evenly on the short sides, the canvas rounded
    to the model's size multiple (its aspect then within one step of the target's: fill_size crops)."""
    w, h = size
    tw, th = target
    m = manifest.size_multiple
    W, H = (h * tw / th, h) if w * th < h * tw else (w, w * th / tw)  # the canvas at the target's aspect
    scale = min(1.0, manifest.max_size / max(W, H))
    w, h, W, H = max(1, int(w * scale)), max(1, int(h * scale)), W * scale, H * scale
    W = min(max(-(-w // m) * m, round(W / m) * m), manifest.max_size // m * m)
    H = min(max(-(-h // m) * m, round(H / m) * m), manifest.max_size // m * m)
    if min(W, H) < manifest.min_size:
        raise RequestError(f"outpainting {size[0]}x{size[1]} to {tw}x{th} gives a {W}x{H} canvas, below the "
                           f"{manifest.min_size} px model {manifest.id!r} draws; use a larger init_image")
    dx, dy = W - w, H - h
    if dx == dy == 0:
        raise RequestError(f"the init_image ({size[0]}x{size[1]}) already has the aspect of {tw}x{th}: there is "
                           "nothing to outpaint; ask for the size with size_preset (image to image) instead")
    return scale, (dx // 2, dy // 2, dx - dx // 2, dy - dy // 2)


def image_tensor(image: Image.Image, width: int, height: int, mode: str = "RGB"):
    """A PIL image resized to width x height -> (1, C, H, W) float in [0, 1]; RGBA is put on white."""
    import numpy as np
    import torch

    if image.mode == "RGBA" and mode == "RGB":
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image, mask=image.getchannel("A"))
        image = white
    arr = np.asarray(image.convert(mode).resize((width, height), Image.LANCZOS), dtype=np.float32) / 255
    arr = arr[..., None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()


def versions() -> dict[str, str]:
    import diffusers
    import torch

    from designerbox import __version__

    return {"designerbox": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "python": platform.python_version()}


def apply_lora_tags(model, prompt: str, home: Path | None,
                    loras: list | None = None) -> tuple[str, list[dict]] | None:
    """Merge the LoRAs a prompt names, then those of the request's `loras` field (LoraRef: name,
    weight; the same as tags at the prompt's end), into a Stable Diffusion model (and take out those
    of the last request); returns (the prompt without its tags, what was applied), or None for models
    without LoRA support when neither names one."""
    from designerbox.pipelines.lora import LoraError, find_lora, lora_sha256, parse_lora_tags, set_loras

    try:
        clean, tags = parse_lora_tags(prompt)
    except LoraError as err:
        raise RequestError(str(err)) from None
    tags += [(ref.name, ref.weight) for ref in loras or []]
    if not isinstance(model, (LatentDiffusion, LatentDiffusionXL)):
        if tags:
            raise RequestError(f"LoRAs (<lora:...> tags or the loras field) work with Stable Diffusion models "
                               f"(sd15, sd2, sdxl); this model draws without them. Remove "
                               f"{', '.join(f'<lora:{n}>' for n, _ in tags)}")
        return None
    if tags and home is None:
        raise RequestError("this front door has no LoRA folder configured")
    try:
        paths = [(find_lora(home, name), strength) for name, strength in tags]
        summary = set_loras(model, paths)
    except LoraError as err:
        raise RequestError(str(err)) from None
    for item, (path, _) in zip(summary, paths):
        item["sha256"] = lora_sha256(path)
    return clean, summary


def apply_embeddings(model, prompt: str, negative: str | None, home: Path | None) -> list[dict] | None:
    """Give a Stable Diffusion model the textual-inversion embeddings of $home/embeddings that the prompt
    or the negative prompt names (and take out those of the last request); returns what was applied
    (name, vectors, sha256), or None for models without text-encoder embeddings."""
    from designerbox.pipelines.textual_inversion import (
        EmbeddingError,
        embedding_sha256,
        find_in_prompts,
        set_embeddings,
    )

    if not isinstance(model, (LatentDiffusion, LatentDiffusionXL)):
        return None
    found = find_in_prompts(home, [prompt, negative]) if home is not None else []
    try:
        summary = set_embeddings(model, found)
    except EmbeddingError as err:
        raise RequestError(str(err)) from None
    return [dict(item, sha256=embedding_sha256(path)) for item, (_, path) in zip(summary, found)]


def run_generation(req: GenerationRequest, manifest: ModelManifest, model,
                   progress: Callable[[dict], None] | None = None,
                   upscaler: tuple[ModelManifest, object] | None = None,
                   lora_home: Path | None = None, drawer: Callable | None = None) -> list[GeneratedImage]:
    """Draw the images of one request with an already loaded model; returns them with their records.

    upscaler   (manifest, loaded network) of a super-resolution model for sizes beyond the drawn
               size (a cascade), or None to resize with Lanczos alone
    lora_home  $DESIGNERBOX_HOME: where <lora:NAME:STRENGTH> tags in the prompt find loras/NAME
               (pipelines/lora.py) and words of the prompts find embeddings/NAME (textual inversion,
               pipelines/textual_inversion.py); the Stable Diffusion families only
    drawer     instead of the family's text-to-image function, with its signature: the server's worker
               passes one that draws several jobs' images in one batched network call (jobs/batch.py)
    """
    t0 = time.time()
    inputs = {k: read_input_image(getattr(req, k), k) for k in ("init_image", "mask_image") if getattr(req, k)}
    outpaint = None
    if req.outpaint_to:  # outpainting to a platform size: the border that gives the picture its aspect
        from dataclasses import replace

        init, target = inputs["init_image"], presets.get_size(req.outpaint_to)
        scale, extend = outpaint_plan(init.image.size, (target.width, target.height), manifest)
        outpaint = {"to": req.outpaint_to, "from_size": list(init.image.size), "scale": round(scale, 4),
                    "extend": list(extend)}
        if scale != 1:
            size = (max(1, int(init.image.width * scale)), max(1, int(init.image.height * scale)))
            inputs["init_image"] = replace(init, image=init.image.resize(size, Image.LANCZOS))
    if req.extend or outpaint:  # outpainting: a larger canvas, and the new border as the mask
        inputs.update(outpaint_inputs(inputs["init_image"], req.extend or extend))
        if outpaint:
            outpaint["canvas"] = list(inputs["init_image"].image.size)
    r = resolve(req, manifest, upscaler[0].id if upscaler else "none", inputs)
    if outpaint:
        r = r.model_copy(update={"extend": extend})
    # 1. the style preset turns the prompt into what the text encoder sees
    prompt, negative = r.prompt, r.negative_prompt
    if r.style is not None:
        prompt, negative = presets.get_style(r.style).apply(prompt, negative)
    if manifest.kind == "gan":
        negative = None  # a GAN has no unconditional branch to steer away from
    loras = apply_lora_tags(model, prompt, lora_home, r.loras)
    if loras is not None:
        prompt, loras = loras
    embeddings = apply_embeddings(model, prompt, negative, lora_home)
    # 2. draw at a size the network can, then fit to the asked size
    dw, dh = inputs["init_image"].image.size if outpaint else draw_size(r, manifest)  # outpainting: the canvas
    seeds = [(r.seed + i) % 2**32 for i in range(r.batch_size)]
    if manifest.kind == "gan":
        images = gan_text_to_image(model, prompt, seeds=seeds, truncation=r.truncation)
        if progress:
            progress({"i": 0, "total": 1})
    else:
        from designerbox.pipelines.sampling import steps_for_strength

        run_steps = steps_for_strength(r.steps, r.strength) if r.strength else r.steps  # image to image: fewer
        callback = None
        if progress:  # each step: progress, and a cheap image of the current estimate ("preview", [0, 1])
            def callback(info: dict) -> None:
                preview = model.preview(info["denoised"]) if "denoised" in info else None
                progress(dict(info, total=run_steps, preview=preview))
        draw = (sdxl_text_to_image if isinstance(model, LatentDiffusionXL) else
                sd_text_to_image if isinstance(model, LatentDiffusion) else
                sd3_text_to_image if isinstance(model, StableDiffusion3) else
                flux_text_to_image if isinstance(model, Flux) else text_to_image)
        image_inputs = {}
        if "init_image" in inputs:  # image to image / inpainting, at the size the network draws
            image_inputs = {"init_images": image_tensor(inputs["init_image"].image, dw, dh), "strength": r.strength}
            if "mask_image" in inputs:
                image_inputs["mask"] = image_tensor(inputs["mask_image"].image, dw, dh, mode="L")
        images = (drawer or draw)(model, prompt, negative, width=dw, height=dh, steps=r.steps, sampler=r.sampler,
                      schedule=r.schedule, cfg_scale=r.cfg_scale, seeds=seeds, callback=callback, **image_inputs)
    enlarge = None
    if upscaler is not None:
        from designerbox.pipelines.upscale import upscale

        enlarge = lambda im: upscale(upscaler[1], im)  # noqa: E731
    licence_flag = flag(manifest.licence)  # registry/licences.py: commercial use yes / conditions / no / unknown
    out = []
    for i, (img, seed) in enumerate(zip(to_pil(images), seeds)):
        note = None
        if (dw, dh) != (r.width, r.height):
            fit = fill_size if outpaint else fit_to_size  # an outpainted canvas has the target's aspect: no padding
            img, note = fit(img, r.width, r.height, enlarge, upscaler[0].id if upscaler else "")
        seconds = round(time.time() - t0, 3)
        record = {
            "request": r.model_dump(), "seed": seed, "batch_index": i,
            "conditioning": {"prompt": prompt, "negative_prompt": negative},
            "model": {"id": manifest.id, "name": manifest.name, "family": manifest.family,
                      "sha256": manifest.weights_sha256, "hash": manifest.short_hash, "licence": manifest.licence,
                      "commercial_use": licence_flag["commercial_use"]},
            "upscaler": {"id": upscaler[0].id, "sha256": upscaler[0].weights_sha256} if upscaler else None,
            "loras": loras or [], "embeddings": embeddings or [], "outpaint": outpaint,
            "native_size": [dw, dh], "output_size": [r.width, r.height], "resized": note,
            "vae_tiling": model.uses_vae_tiling(dw, dh) if hasattr(model, "uses_vae_tiling") else None,
            "device": str(model.device), "dtype": str(model.dtype).removeprefix("torch."),
            "seconds": seconds, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": versions(),
        }
        out.append(GeneratedImage(image=img, record=record, png=png_bytes(img, record)))
    return out

