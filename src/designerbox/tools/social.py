"""social: one image (or a prompt, drawn first by the job) in, every platform size out.

For each size (the platform table is `presets/sizes.json`, shared with `generate --preset`):
  1. the subject: faces (OpenCV Haar cascade, grown to head and shoulders) and the salient blobs
     (spectral residual + border contrast; tools/saliency.py), found once per image;
  2. the largest window of the target's aspect ratio inside the image, centred on the subject
     (faces first, else the saliency-weighted centre), then slid so the subject's box is inside it;
  3. when the subject's box cannot fit in that window (a wide subject in a 9:16 story), `fit="auto"`
     (the default) and `fit="pad"` widen the window past the image and fill the outside with a
     blurred, enlarged copy of the image (no subject is cut); `fit="crop"` crops anyway and records
     that the subject was cut; `fit="outpaint"` draws the outside instead, with a diffusion model through
     the generation path's outpainting (ctx.outpaint: the picture on a canvas of the window's aspect, the
     border inpainted), then puts the picture's own pixels back over it (feathered at the seam);
  4. the window is resized to the exact pixel size (Lanczos; enlarging is recorded).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image, ImageFilter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from designerbox import presets
from designerbox.tools.registry import Tool, ToolContext, ToolImage
from designerbox.tools.saliency import Box, faces, head_and_shoulders, subject_box

DEFAULT_SIZES = ("instagram-post", "instagram-portrait", "instagram-story", "facebook-post", "facebook-cover",
                 "x-post", "x-header", "linkedin-post", "linkedin-banner", "youtube-thumbnail", "pinterest-pin",
                 "tiktok")
# the families that outpaint well (inpainting a border at any aspect); the first installed is the default
OUTPAINT_FAMILIES = ("sd15", "sd2", "sdxl", "sd3", "flux-dev", "flux-schnell")
BORDER_PROMPT = "the same photo continued beyond its edges, matching background and light, seamless"


class SocialOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    sizes: list[str] = Field(list(DEFAULT_SIZES), min_length=1, description="platform size ids (presets/sizes.json)")
    fit: Literal["auto", "crop", "pad", "outpaint"] = Field(
        "auto", description="auto: crop unless it would cut the subject, then pad; crop: always crop; pad: always "
        "show the whole image; outpaint: crop unless it would cut the subject, then draw the frame's missing part "
        "with a diffusion model")
    faces: bool = Field(True, description="detect faces and keep them in every frame")
    margin: float = Field(0.03, ge=0.0, le=0.3, description="room kept around the subject, as a share of the frame")
    prompt: str | None = Field(None, max_length=4000, description="draw the image from this prompt first")
    model: str | None = Field(None, description="the model that draws the prompt (default model when omitted) and "
                              "outpaints (first installed Stable Diffusion model when omitted)")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="the seed of the drawn image and border")
    outpaint_prompt: str | None = Field(None, max_length=4000, description="fit=outpaint: what to draw in the "
                                        "border (default: the prompt the image was drawn from, else a neutral one)")
    outpaint_side: int | None = Field(None, ge=32, le=4096, description="fit=outpaint: the long side of the canvas "
                                      "the model draws (default 1.5x the model's native side)")

    @field_validator("sizes", mode="before")
    @classmethod
    def _split(cls, v):
        return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v

    @field_validator("sizes")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        table = presets.sizes()
        bad = [s for s in v if s not in table]
        if bad:
            raise ValueError(f"unknown size {', '.join(map(repr, bad))}; valid sizes: {', '.join(table)}")
        return list(dict.fromkeys(v))


def window(size: tuple[int, int], aspect: float, subject: Box, centre: tuple[float, float],
           margin: float) -> tuple[tuple[float, float, float, float], bool]:
    """((x0, y0, x1, y1) of the crop window, whether it holds the subject with its margin); the window
    lies inside the image unless the subject cannot fit (then it is centred on the subject, outside)."""
    iw, ih = size
    cw, ch = (iw, iw / aspect) if iw / aspect <= ih else (ih * aspect, ih)
    sx0, sy0, sx1, sy1 = subject
    mx, my = margin * cw, margin * ch
    need_w, need_h = sx1 - sx0 + 2 * mx, sy1 - sy0 + 2 * my
    fits = need_w <= cw + 1e-6 and need_h <= ch + 1e-6
    if not fits:  # the smallest window of this aspect around the subject, which spills out of the image
        cw = max(cw, need_w, need_h * aspect)
        ch = cw / aspect
        cx, cy = (sx0 + sx1) / 2, (sy0 + sy1) / 2
        return (cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2), False
    x0 = min(max(centre[0] - cw / 2, sx1 + mx - cw), sx0 - mx)  # centred, then slid to hold the subject
    y0 = min(max(centre[1] - ch / 2, sy1 + my - ch), sy0 - my)
    x0, y0 = min(max(x0, 0.0), iw - cw), min(max(y0, 0.0), ih - ch)
    return (x0, y0, x0 + cw, y0 + ch), True


def render(image: Image.Image, win: tuple[float, float, float, float], w: int, h: int) -> Image.Image:
    """The window resized to w x h; parts outside the image come from a blurred, enlarged copy."""
    x0, y0, x1, y1 = win
    iw, ih = image.size
    if x0 >= -0.5 and y0 >= -0.5 and x1 <= iw + 0.5 and y1 <= ih + 0.5:
        box = (max(0.0, x0), max(0.0, y0), min(float(iw), x1), min(float(ih), y1))
        return image.resize((w, h), Image.LANCZOS, box=box, reducing_gap=3.0)
    s = w / (x1 - x0)  # output pixels per image pixel
    cover = max(w / iw, h / ih)
    small = image.resize((max(1, round(iw * cover / 8)), max(1, round(ih * cover / 8))), Image.BILINEAR)
    back = small.filter(ImageFilter.GaussianBlur(6)).resize((round(iw * cover), round(ih * cover)), Image.BILINEAR)
    canvas = back.crop(((back.width - w) // 2, (back.height - h) // 2, (back.width - w) // 2 + w,
                        (back.height - h) // 2 + h))
    ix0, iy0, ix1, iy1 = max(0.0, x0), max(0.0, y0), min(float(iw), x1), min(float(ih), y1)
    pw, ph = max(1, round((ix1 - ix0) * s)), max(1, round((iy1 - iy0) * s))
    part = image.resize((pw, ph), Image.LANCZOS, box=(ix0, iy0, ix1, iy1), reducing_gap=3.0)
    canvas.paste(part, (round((ix0 - x0) * s), round((iy0 - y0) * s)))
    return canvas


def plan(size: tuple[int, int], aspect: float, subject: Box, keep: Box | None, centre: tuple[float, float],
         fit: str, margin: float) -> tuple[tuple[float, float, float, float], str, str | None]:
    """(window, "crop" or "pad", what was cut or None) for one aspect ratio.

    keep: the faces' head-and-shoulders box (must stay whole), or None. In "auto", a subject that does
    not fit is padded when it is compact (at most 40% of the image: an object on a background) or
    when even the faces do not fit; a subject that fills the photo is cropped around the faces, else
    around the saliency-weighted centre."""
    win, fits = window(size, aspect, subject, centre, margin)
    if not fits and fit == "outpaint":  # the window around the subject, its outside drawn
        return win, "outpaint", None
    if fits or fit == "pad":
        return (win if fit != "pad" else _whole(size, aspect)), ("crop" if fit != "pad" else "pad"), None
    iw, ih = size
    compact = (subject[2] - subject[0]) * (subject[3] - subject[1]) <= 0.4 * iw * ih
    if fit == "auto" and compact:
        return win, "pad", None
    if keep is not None:
        kwin, kfits = window(size, aspect, keep, centre, margin)
        if kfits:
            return kwin, "crop", "the salient area at the frame's edge (faces kept whole)"
        if fit == "auto":
            return kwin, "pad", None
    cx, cy = centre
    cwin, _ = window(size, aspect, (int(cx), int(cy), int(cx) + 1, int(cy) + 1), centre, 0.0)
    return cwin, "crop", "the subject does not fit this aspect ratio: cropped around its centre"


def outpaint_model(opts: SocialOptions, ctx: ToolContext | None) -> str:
    """The diffusion model that draws the border: `model`, else the first installed Stable Diffusion one."""
    if ctx is None:
        raise ValueError("fit='outpaint' draws with a diffusion model: run the social tool through run_tool "
                         "(the CLI, the REST API or designerbox.jobs.tool.run_tool)")
    if opts.model:
        return opts.model
    found = ctx.installed("diffusion", OUTPAINT_FAMILIES)
    if not found:
        raise ValueError(f"fit='outpaint' needs an installed Stable Diffusion model (families "
                         f"{', '.join(OUTPAINT_FAMILIES)}) to draw the border, and none is; installed diffusion "
                         f"models: {', '.join(ctx.installed('diffusion')) or 'none'}. Add one with `designerbox "
                         "models add PATH`, name one with model=ID, or use fit='auto' or 'pad'")
    return found[0]


def outpaint(image: Image.Image, win: tuple[float, float, float, float], w: int, h: int, ctx: ToolContext,
             model: str, prompt: str, seed: int | None, side: int | None = None) -> tuple[Image.Image, dict]:
    """The window resized to w x h, its parts outside the image drawn by `model` (ctx.outpaint), the
    image's own pixels (Lanczos) pasted back over the drawn canvas, feathered where they meet it."""
    x0, y0, x1, y1 = win
    iw, ih = image.size
    # 1. the image's part of the window (whole pixels), and what the window adds on each side
    ix0, iy0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    ix1, iy1 = min(iw, int(np.ceil(x1))), min(ih, int(np.ceil(y1)))
    extend = (ix0 - x0, iy0 - y0, x1 - ix1, y1 - iy1)
    canvas, record = ctx.outpaint(image.crop((ix0, iy0, ix1, iy1)), extend, prompt=prompt, model=model, seed=seed,
                                  side=side)
    # 2. the window in the canvas's pixels, resized to the frame
    L, T, pw, ph = record["outpaint"]["picture"]
    sx, sy = pw / (ix1 - ix0), ph / (iy1 - iy0)
    cw, ch = canvas.size
    box = (max(0.0, L + (x0 - ix0) * sx), max(0.0, T + (y0 - iy0) * sy),
           min(float(cw), L + (x1 - ix0) * sx), min(float(ch), T + (y1 - iy0) * sy))
    out = canvas.convert("RGB").resize((w, h), Image.LANCZOS, box=box)
    # 3. the image's own pixels over it, blended in over a few pixels where the border was drawn
    s = w / (x1 - x0)
    ax0, ay0, ax1, ay1 = max(0.0, x0), max(0.0, y0), min(float(iw), x1), min(float(ih), y1)
    part = image.resize((max(1, round((ax1 - ax0) * s)), max(1, round((ay1 - ay0) * s))), Image.LANCZOS,
                        box=(ax0, ay0, ax1, ay1), reducing_gap=3.0)
    feather = max(2, round(0.01 * min(w, h)))
    alpha = np.ones((part.height, part.width), np.float32)
    ramp = (np.arange(feather, dtype=np.float32) + 0.5) / feather
    for side, spills in zip("ltrb", (x0 < 0, y0 < 0, x1 > iw, y1 > ih)):
        if spills:
            view = {"l": alpha[:, :feather], "t": alpha[:feather, :].T, "r": alpha[:, ::-1][:, :feather],
                    "b": alpha[::-1, :][:feather, :].T}[side]
            np.minimum(view, ramp[None, : view.shape[1]], out=view)
    mask = Image.fromarray((alpha * 255).round().astype(np.uint8), "L")
    px, py = round((ax0 - x0) * s), round((ay0 - y0) * s)
    out.paste(part, (px, py), mask)
    o = record["outpaint"]
    return out, {"model": record["model"]["id"], "model_hash": record["model"].get("hash"), "seed": record["seed"],
                 "prompt": prompt, "steps": record["request"].get("steps"), "canvas": o["canvas"],
                 "extend": o["extend"], "picture": o["picture"], "scale": o["scale"],
                 "extend_image_px": [round(max(0.0, e), 1) for e in extend], "feather": feather,
                 # the picture's own pixels: this box of the image, resized into this box of the frame
                 "kept": {"image_box": [ax0, ay0, ax1, ay1], "frame_box": [px, py, px + part.width, py + part.height]}}


def run(image: Image.Image, opts: SocialOptions, ctx: ToolContext | None = None) -> list[ToolImage]:
    model = outpaint_model(opts, ctx) if opts.fit == "outpaint" else None  # fails before any work
    rgb = np.asarray(image.convert("RGB"))
    # 1. the subject, once
    face_boxes = faces(rgb) if opts.faces else []
    subject, centre = subject_box(rgb, face_boxes)
    keep = None
    if face_boxes:
        heads = [head_and_shoulders(f, *image.size) for f in face_boxes]
        keep = (min(b[0] for b in heads), min(b[1] for b in heads), max(b[2] for b in heads), max(b[3] for b in heads))
    if image.mode == "RGBA":
        image = image.convert("RGB")
    outputs = []
    for size_id in opts.sizes:
        p = presets.get_size(size_id)
        # 2-3. the window for this aspect ratio
        win, mode, cut = plan(image.size, p.width / p.height, subject, keep, centre, opts.fit, opts.margin)
        # 4. exact size
        drawn = None
        if mode == "outpaint":
            out, drawn = outpaint(image, win, p.width, p.height, ctx, model, opts.outpaint_prompt or opts.prompt
                                  or BORDER_PROMPT, opts.seed, opts.outpaint_side)
        else:
            out = render(image, win, p.width, p.height)
        scale = p.width / (win[2] - win[0])
        outputs.append(ToolImage(name=size_id, image=out, details={
            "size": [p.width, p.height], "platform": p.name, "window": [round(v, 1) for v in win],
            "subject_box": list(subject), "faces": [list(f) for f in face_boxes], "fit": mode, "cut": cut,
            "enlarged": round(scale, 3) if scale > 1 else None, "outpainted": drawn}))
    return outputs


def _whole(size: tuple[int, int], aspect: float) -> tuple[float, float, float, float]:
    """The smallest window of this aspect holding the whole image, centred."""
    iw, ih = size
    cw = max(iw, ih * aspect)
    ch = cw / aspect
    return ((iw - cw) / 2, (ih - ch) / 2, (iw + cw) / 2, (ih + ch) / 2)


TOOL = Tool(name="social", version="1.0", options=SocialOptions, run=run, prompt_field="prompt",
            uses_models=lambda o: o.fit == "outpaint",
            summary="one image or prompt -> every platform size, cropped around faces and the salient subject")
