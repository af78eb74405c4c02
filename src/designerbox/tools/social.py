"""social: one image (or a prompt, drawn first by the job) in, every platform size out.

For each size (the platform table is `presets/sizes.json`, shared with `generate --preset`):
  1. the subject: faces (OpenCV Haar cascade, grown to head and shoulders) and the salient blobs
     (spectral residual + border contrast; tools/saliency.py), found once per image;
  2. the largest window of the target's aspect ratio inside the image, centred on the subject
     (faces first, else the saliency-weighted centre), then slid so the subject's box is inside it;
  3. when the subject's box cannot fit in that window (a wide subject in a 9:16 story), `fit="auto"`
     (the default) and `fit="pad"` widen the window past the image and fill the outside with a
     blurred, enlarged copy of the image (no subject is cut); `fit="crop"` crops anyway and records
     that the subject was cut;
  4. the window is resized to the exact pixel size (Lanczos; enlarging is recorded).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image, ImageFilter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from designerbox import presets
from designerbox.tools.registry import Tool, ToolImage
from designerbox.tools.saliency import Box, faces, head_and_shoulders, subject_box

DEFAULT_SIZES = ("instagram-post", "instagram-portrait", "instagram-story", "facebook-post", "facebook-cover",
                 "x-post", "x-header", "linkedin-post", "linkedin-banner", "youtube-thumbnail", "pinterest-pin",
                 "tiktok")


class SocialOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    sizes: list[str] = Field(list(DEFAULT_SIZES), min_length=1, description="platform size ids (presets/sizes.json)")
    fit: Literal["auto", "crop", "pad"] = Field("auto", description="auto: crop unless it would cut the subject, "
                                                "then pad; crop: always crop; pad: always show the whole image")
    faces: bool = Field(True, description="detect faces and keep them in every frame")
    margin: float = Field(0.03, ge=0.0, le=0.3, description="room kept around the subject, as a share of the frame")
    prompt: str | None = Field(None, max_length=4000, description="draw the image from this prompt first")
    model: str | None = Field(None, description="the model that draws the prompt (default model when omitted)")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="the seed of the drawn image")

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


def run(image: Image.Image, opts: SocialOptions) -> list[ToolImage]:
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
        out = render(image, win, p.width, p.height)
        scale = p.width / (win[2] - win[0])
        outputs.append(ToolImage(name=size_id, image=out, details={
            "size": [p.width, p.height], "platform": p.name, "window": [round(v, 1) for v in win],
            "subject_box": list(subject), "faces": [list(f) for f in face_boxes], "fit": mode, "cut": cut,
            "enlarged": round(scale, 3) if scale > 1 else None}))
    return outputs


def _whole(size: tuple[int, int], aspect: float) -> tuple[float, float, float, float]:
    """The smallest window of this aspect holding the whole image, centred."""
    iw, ih = size
    cw = max(iw, ih * aspect)
    ch = cw / aspect
    return ((iw - cw) / 2, (ih - ch) / 2, (iw + cw) / 2, (ih + ch) / 2)


TOOL = Tool(name="social", version="1.0", options=SocialOptions, run=run, prompt_field="prompt",
            summary="one image or prompt -> every platform size, cropped around faces and the salient subject")
