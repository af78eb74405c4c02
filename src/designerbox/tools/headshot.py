"""headshot: a portrait photo in, professional headshots out (one per look), framed for LinkedIn,
a square profile picture or a 4:5 portrait.

  1. the face (one, large, bright and sharp enough, else a PortraitError naming the problem) and
     its eyes; the person's mask (tools/portrait.py);
  2. the frame: the face box is `face_height` of the frame's height, the eyes' midpoint on the
     vertical centre line at `eye_line` from the top, the eyes levelled (rotation about their
     midpoint) when both were found. Where the person reaches the photo's edge (shoulders cut by
     the bottom or a side) the frame must not pass that edge: it slides (the face off centre by at
     most 8%, the eye line lower by at most 6%), then zooms in; the top may pass the photo's edge
     (the space above the head is background anyway);
  3. tone: white balance from the person's near-neutral highlights (their mean chroma pulled half
     way to grey, at most 5 Lab units), exposure by a gamma on CIELAB L that brings the face's
     median L most of the way to `face_brightness` (gamma**0.75: a gentle pull), a mild S-curve; on
     the person only (the backdrops are made);
  4. the rim's colours are cleaned of the old background (F = (I - (1 - a) B) / a, B the photo with
     the person inpainted; beyond the rim the person's colours are spread outwards), then the crop
     is warped into the frame in one resampling (Lanczos);
     `upscale` 2 or 4 first super-resolves the source crop with the installed ESRGAN model when the
     frame enlarges it;
  5. one output per look, the person over: studio grey (a lit backdrop), a gradient, a brand colour,
     a blurred office (the photo's own background, inpainted and thrown out of focus, or a wallpaper
     from an installed Debian wallpaper package) or a generated scene (drawn from `scene_prompt` by
     a diffusion model, then defocused).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from designerbox.tools.portrait import Face, check_photo, find_face, person_mask
from designerbox.tools.product import HEX
from designerbox.pipelines.upscale import upscale as super_resolve
from designerbox.tools.registry import Tool, ToolImage

if TYPE_CHECKING:
    from designerbox.tools.registry import ToolContext

Look = Literal["studio-grey", "gradient", "brand", "office", "scene"]
UPSCALERS = ("esrgan-medium-x4", "esrgan-slim-x4")  # preferred, when installed
WALLPAPER_DIRS = ("/usr/share/backgrounds", "/usr/share/wallpapers")


class HeadshotOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    width: int = Field(1024, ge=128, le=4096, description="output width in pixels")
    height: int = Field(1024, ge=128, le=4096, description="output height in pixels")
    looks: list[Look] = Field(["studio-grey"], min_length=1, description="one output per look: studio-grey, "
                              "gradient, brand, office, scene")
    brand_colour: str = Field("#1F4E79", description="the brand look's colour, #RRGGBB")
    gradient: tuple[str, str] = Field(("#EEF1F5", "#A7B0BC"), description="top and bottom colours of the gradient look")
    office_source: Literal["photo", "wallpaper"] = Field("photo", description="the office look's backdrop: the "
                                                         "photo's own background, or an installed wallpaper")
    scene_prompt: str | None = Field(None, max_length=1000, description="the scene look draws its backdrop from this")
    scene_strength: float = Field(0.9, gt=0.0, le=1.0, description="how far the scene departs from the photo's "
                                  "own background (image to image strength)")
    model: str | None = Field(None, description="the diffusion model that draws the scene (first installed when omitted)")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="the seed of the drawn scene")
    face_height: float = Field(0.28, ge=0.15, le=0.6, description="face box height as a share of the frame's")
    eye_line: float = Field(0.40, ge=0.25, le=0.6, description="eye line, as a share of the height from the top")
    level: bool = Field(True, description="rotate to level the eyes (when both are found)")
    tone: bool = Field(True, description="white balance, exposure and contrast correction")
    face_brightness: float = Field(68.0, ge=30, le=85, description="target median CIELAB L of the face (0-100)")
    upscale: Literal[1, 2, 4] = Field(1, description="super-resolve the photo x2 or x4 (ESRGAN) before an enlarging frame")
    min_face: int = Field(64, ge=16, le=2000, description="smallest face width accepted, in pixels")
    min_sharpness: float = Field(25.0, ge=0, description="smallest variance of the Laplacian of the face at 128 px")
    min_brightness: float = Field(45.0, ge=0, le=255, description="smallest mean brightness of the face (0-255)")

    @field_validator("looks", mode="before")
    @classmethod
    def _split(cls, v):
        return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v

    @field_validator("looks")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    @field_validator("brand_colour")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not HEX.match(v):
            raise ValueError(f"brand_colour must look like #RRGGBB, not {v!r}")
        return v

    @field_validator("gradient")
    @classmethod
    def _hex2(cls, v: tuple[str, str]) -> tuple[str, str]:
        for c in v:
            if not HEX.match(c):
                raise ValueError(f"gradient colours must look like #RRGGBB, not {c!r}")
        return v

    @model_validator(mode="after")
    def _scene_needs_prompt(self):
        if "scene" in self.looks and not self.scene_prompt:
            raise ValueError("the scene look needs scene_prompt (e.g. 'a bright modern office, bokeh'); "
                             "other looks: studio-grey, gradient, brand, office")
        return self


# --- framing ------------------------------------------------------------------------------------

def frame(face: Face, alpha: np.ndarray, opts: HeadshotOptions) -> tuple[np.ndarray, dict]:
    """The 2x3 affine matrix from the photo to the W x H frame, and what the framing did."""
    H_img, W_img = alpha.shape
    W, H = opts.width, opts.height
    roll = face.roll if opts.level and face.eyes and abs(face.roll) <= 20 else 0.0
    ex, ey = face.eye_centre
    # where the person touches the photo's edge, the frame must stay inside it
    b = max(2, round(0.01 * min(H_img, W_img)))
    touch = {"bottom": alpha[-b:].max() > 0.5, "left": alpha[:, :b].max() > 0.5, "right": alpha[:, -b:].max() > 0.5}
    s = opts.face_height * H / face.height         # frame pixels per photo pixel
    dx, dy, notes = 0.0, 0.0, []                   # the eyes' offset from their place, in frame shares
    for _ in range(60):
        ww, wh = W / s, H / s                      # the window, in photo pixels (roll ignored: it is small)
        x0, y0 = ex - (0.5 + dx) * ww, ey - (opts.eye_line + dy) * wh
        over = {"bottom": y0 + wh - H_img, "left": -x0, "right": x0 + ww - W_img}
        over = {k: v for k, v in over.items() if touch[k] and v > 0.5}
        if not over:
            break
        if "left" in over and dx > -0.08:
            dx = max(-0.08, dx - over["left"] / ww)
        elif "right" in over and dx < 0.08:
            dx = min(0.08, dx + over["right"] / ww)
        elif "bottom" in over and dy < 0.06:
            dy = min(0.06, dy + over["bottom"] / wh)
        elif face.height * s / H < 0.6:
            s *= 1.03
        else:
            notes.append(f"the person is cut by the photo's {', '.join(over)} edge inside the frame")
            break
    if s > opts.face_height * H / face.height * 1.001:
        notes.append(f"zoomed in to keep the frame inside the photo (face {face.height * s / H:.0%} of the height)")
    M = cv2.getRotationMatrix2D((ex, ey), roll, s)  # rotate about the eyes (levels them) and scale
    M[:, 2] += np.array([(0.5 + dx) * W - ex, (opts.eye_line + dy) * H - ey])
    return M, {"scale": round(s, 4), "rotated": round(roll, 2), "eye_at": [round(0.5 + dx, 3), round(opts.eye_line + dy, 3)],
               "face_share": round(face.height * s / H, 3), "notes": notes}


def source_box(M: np.ndarray, W: int, H: int, shape: tuple[int, int], pad: int = 8) -> tuple[int, int, int, int]:
    """The photo's pixels the frame reads (its corners mapped back), padded, inside the photo."""
    inv = cv2.invertAffineTransform(M)
    corners = np.array([[0, 0, 1], [W, 0, 1], [0, H, 1], [W, H, 1]], np.float64) @ inv.T
    x0, y0 = np.floor(corners.min(axis=0)) - pad
    x1, y1 = np.ceil(corners.max(axis=0)) + pad
    h, w = shape
    return int(max(0, x0)), int(max(0, y0)), int(min(w, max(x1, 1))), int(min(h, max(y1, 1)))


def scaled(M: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """M (from a crop's pixels) for the crop resized by (sx, sy), pixel centres kept as cv2.resize keeps them."""
    Ms = M.copy()
    Ms[:, 0], Ms[:, 1] = M[:, 0] / sx, M[:, 1] / sy
    Ms[:, 2] += M[:, 0] * (0.5 / sx - 0.5) + M[:, 1] * (0.5 / sy - 0.5)
    return Ms


# --- tone ---------------------------------------------------------------------------------------

def correct_tone(rgb: np.ndarray, alpha: np.ndarray, face_mask: np.ndarray, target_l: float) -> tuple[np.ndarray, dict]:
    """White balance, exposure and a gentle S-curve, judged on the person: rgb uint8 -> uint8."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)  # L 0..255, a, b centred on 128
    L, A, B = lab[..., 0], lab[..., 1] - 128, lab[..., 2] - 128
    # 1. white balance: near-neutral highlights of the person (a white collar, eyes' whites) or the whole photo
    chroma = np.hypot(A, B)
    person = alpha > 0.5
    pool = person if person.sum() > 500 else np.ones_like(person)
    bright = pool & (L >= np.percentile(L[pool], 90)) & (chroma < 20)
    shift = (0.0, 0.0)
    if bright.sum() >= 50:
        shift = tuple(float(np.clip(-0.5 * v[bright].mean(), -5, 5)) for v in (A, B))
        A, B = A + shift[0], B + shift[1]
    # 2. exposure: a gamma on L bringing the face's median to the target
    med = float(np.median(L[face_mask])) if face_mask.any() else float(np.median(L))
    target = target_l * 2.55
    gamma = float(np.clip(np.log(target / 255) / np.log(np.clip(med, 1.0, 254.0) / 255), 0.7, 1.4)) ** 0.75
    Ln = 255.0 * (L / 255.0) ** gamma
    # 3. a gentle S-curve around the middle (contrast +8%)
    Ln = np.clip(127.5 + (Ln - 127.5) * 1.08 - 0.08 * (Ln - 127.5) ** 3 / 127.5**2, 0, 255)
    out = cv2.cvtColor(np.dstack([Ln, A + 128, B + 128]).clip(0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    return out, {"white_balance_ab": [round(v, 2) for v in shift], "face_median_l": round(med / 2.55, 1),
                 "gamma": round(gamma, 3)}


def clean_plate(rgb: np.ndarray, alpha: np.ndarray, side: int = 256) -> np.ndarray:
    """The photo without the person (inpainted, Telea 2004, at a small size), full size, float32."""
    h, w = alpha.shape
    s = min(1.0, side / max(h, w))
    sw, sh = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    hole = cv2.dilate((cv2.resize(alpha, (sw, sh), interpolation=cv2.INTER_AREA) > 0.05).astype(np.uint8),
                      np.ones((5, 5), np.uint8))
    if hole.all():
        plate = np.full_like(small, small.reshape(-1, 3).mean(axis=0).astype(np.uint8))
    else:
        plate = cv2.inpaint(small, hole, 9, cv2.INPAINT_TELEA)
    return cv2.resize(plate, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)


def foreground(rgb: np.ndarray, alpha: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """The person's own colours everywhere, float32: inside, the photo; on the rim, the old background
    taken out (F = (I - (1 - a) B) / a, a floored at 0.25 so noise is not amplified); outside, the
    nearby sure colours spread out (normalised convolution), so that resampling and super-resolution
    never pull the old background into the edge."""
    a = alpha[..., None]
    sure = (alpha > 0.9).astype(np.float32)[..., None]
    sigma = max(2.0, 0.005 * max(alpha.shape))
    num = cv2.GaussianBlur(rgb.astype(np.float32) * sure, (0, 0), sigma)
    den = cv2.GaussianBlur(sure, (0, 0), sigma)[..., None]
    spread = np.where(den > 1e-3, num / np.maximum(den, 1e-3), rgb)
    rim = ((rgb - (1 - a) * plate) / np.maximum(a, 0.25)).clip(0, 255)
    w = np.clip((a - 0.1) / 0.6, 0, 1)  # trust the rim estimate more as alpha rises
    return np.where(a >= 0.98, rgb, w * rim + (1 - w) * spread).astype(np.float32)


# --- backdrops ----------------------------------------------------------------------------------

def _rgb(c: str) -> np.ndarray:
    return np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)], np.float32)


def _glow(W: int, H: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.ogrid[:H, :W]
    return np.exp(-(((xx - cx) / (r * W)) ** 2 + ((yy - cy) / (r * H)) ** 2)).astype(np.float32)[..., None]


def backdrop(look: str, opts: HeadshotOptions, M: np.ndarray, plate: np.ndarray | None,
             context: ToolContext | None) -> tuple[np.ndarray, dict]:
    """(H, W, 3) float32 0..255 for one look, and what made it."""
    W, H = opts.width, opts.height
    cx, cy = W / 2, opts.eye_line * H  # the light sits behind the head
    if look == "studio-grey":   # a mottled grey backdrop lit from behind the head
        light = _glow(W, H, cx, cy, 0.55)
        return np.broadcast_to(np.float32([92, 96, 101]) * (1 - light) + np.float32([168, 172, 176]) * light,
                               (H, W, 3)).copy(), {}
    if look == "gradient":
        top, bottom = _rgb(opts.gradient[0]), _rgb(opts.gradient[1])
        t = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
        sweep = top * (1 - t) + bottom * t
        light = _glow(W, H, cx, cy, 0.5)
        return np.broadcast_to(sweep * (1 - 0.35 * light) + top * 0.35 * light, (H, W, 3)).copy(), {}
    if look == "brand":
        c = _rgb(opts.brand_colour)
        light = _glow(W, H, cx, cy, 0.6)
        return np.broadcast_to(c * (1 - 0.25 * light) + np.minimum(255, c * 1.35 + 20) * 0.25 * light,
                               (H, W, 3)).copy(), {"colour": opts.brand_colour}
    sigma = 0.025 * max(W, H)
    if look == "office":
        if opts.office_source == "wallpaper":
            path = find_wallpaper()
            paper = np.asarray(Image.open(path).convert("RGB").resize((W, H), Image.LANCZOS), np.float32)
            return cv2.GaussianBlur(paper, (0, 0), sigma), {"wallpaper": str(path)}
        back = cv2.warpAffine(plate, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        back = cv2.GaussianBlur(back, (0, 0), sigma)
        return back * 0.85 + 0.15 * back.mean(axis=(0, 1)), {"source": "the photo's own background, person inpainted"}
    if look == "scene":
        if context is None:
            raise ValueError("the scene look needs a model to draw with; run the tool through run_tool")
        # drawn over the photo's own background (its light and layout), then thrown out of focus
        base = cv2.warpAffine(plate, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        base = Image.fromarray(cv2.GaussianBlur(base, (0, 0), sigma).round().clip(0, 255).astype(np.uint8))
        model = opts.model or _first(context.installed("diffusion"), "diffusion model")
        img, record = context.img2img(base, prompt=opts.scene_prompt, model=model, strength=opts.scene_strength,
                                      seed=opts.seed)
        back = np.asarray(img.convert("RGB").resize((W, H), Image.LANCZOS), np.float32)
        return cv2.GaussianBlur(back, (0, 0), 0.6 * sigma), {
            "prompt": opts.scene_prompt, "model": record.get("model", {}).get("id", model),
            "seed": record.get("seed"), "strength": opts.scene_strength}
    raise ValueError(f"unknown look {look!r}; valid looks: studio-grey, gradient, brand, office, scene")


def _first(ids: list[str], what: str) -> str:
    if not ids:
        raise ValueError(f"no {what} is installed" + (": designerbox assets install esrgan-medium-x4, or upscale=1"
                                                      if what.startswith("super") else ""))
    return ids[0]


def find_wallpaper() -> Path:
    for d in WALLPAPER_DIRS:
        found = sorted(p for p in Path(d).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) \
            if Path(d).is_dir() else []
        if found:
            return found[0]
    raise ValueError(f"no wallpaper is installed (looked in {', '.join(WALLPAPER_DIRS)}); install a Debian wallpaper "
                     "package (e.g. gnome-backgrounds, CC-BY-SA) or use office_source=photo")


# --- the tool -----------------------------------------------------------------------------------

def run(image: Image.Image, opts: HeadshotOptions, context: ToolContext | None = None) -> list[ToolImage]:
    rgb = np.ascontiguousarray(np.asarray(image.convert("RGB")))
    W, H = opts.width, opts.height
    # 1. the face, the checks, the person
    face, found = find_face(rgb)
    found |= check_photo(rgb, face, opts.min_face, opts.min_brightness, opts.min_sharpness)
    alpha, seg = person_mask(rgb, face)
    found |= seg
    # 2. the frame, and the photo's pixels it reads
    M, framing = frame(face, alpha, opts)
    x0, y0, x1, y1 = source_box(M, W, H, alpha.shape)
    crop, a = rgb[y0:y1, x0:x1], alpha[y0:y1, x0:x1]
    M = M.copy()
    M[:, 2] += M[:, :2] @ [x0, y0]  # the same transform, from the crop's pixels
    # 3. tone, on the person
    fx0, fy0, fx1, fy1 = face.box
    face_mask = np.zeros(a.shape, bool)
    face_mask[max(0, fy0 - y0 + face.height // 4):max(0, fy1 - y0 - face.height // 8),
              max(0, fx0 - x0 + face.width // 5):max(0, fx1 - x0 - face.width // 5)] = True
    tone = {}
    if opts.tone:
        crop, tone = correct_tone(crop, a, face_mask, opts.face_brightness)
    # 4. the rim cleaned of the old background, then (optionally) super-resolved, then warped into the frame
    plate = clean_plate(crop, a)
    fg = foreground(crop, a, plate)
    up = None
    if opts.upscale > 1 and framing["scale"] > 1.05:
        if context is None:
            raise ValueError("upscale needs the installed super-resolution model; run the tool through run_tool")
        up_id = _first([u for u in UPSCALERS if u in context.installed("upscaler")] + context.installed("upscaler"),
                       "super-resolution model")
        manifest, net = context.model(up_id)
        big = super_resolve(net, Image.fromarray(fg.round().astype(np.uint8)))
        up = {"id": manifest.id, "sha256": manifest.weights_sha256}
        if opts.upscale == 2 and big.width >= 4 * fg.shape[1]:  # the x4 model's result, halved
            big = big.resize((fg.shape[1] * 2, fg.shape[0] * 2), Image.LANCZOS)
        fg = np.asarray(big, np.float32)
        up = dict(up) | {"factor": round(fg.shape[1] / crop.shape[1], 3)}
    elif opts.upscale > 1:
        up = {"skipped": f"the frame does not enlarge the photo (scale {framing['scale']:.2f})"}
    if framing["scale"] < 0.5:  # a shrinking frame: area-average first (warpAffine would alias)
        k = int(1 / framing["scale"])
        fg = cv2.resize(fg, (max(1, fg.shape[1] // k), max(1, fg.shape[0] // k)), interpolation=cv2.INTER_AREA)
    Mf = scaled(M, fg.shape[1] / crop.shape[1], fg.shape[0] / crop.shape[0])
    a_src = a if fg.shape[:2] == a.shape else cv2.resize(
        a, (fg.shape[1], fg.shape[0]), interpolation=cv2.INTER_AREA if fg.shape[1] < a.shape[1] else cv2.INTER_LINEAR)
    person = cv2.warpAffine(fg.astype(np.float32), Mf, (W, H), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REPLICATE)
    matte = cv2.warpAffine(a_src.astype(np.float32), Mf, (W, H), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None].clip(0, 1)
    # 5. one output per look
    outputs = []
    for look in opts.looks:
        back, made = backdrop(look, opts, M, plate, context)
        out = (person.clip(0, 255) * matte + back * (1 - matte)).round().clip(0, 255).astype(np.uint8)
        outputs.append(ToolImage(name=f"{W}x{H}-{look}", image=Image.fromarray(out, "RGB"), details=found | {
            "look": look, "backdrop": made, "framing": framing, "tone": tone, "upscaled": up,
            "source_box": [x0, y0, x1, y1]}))
    return outputs


TOOL = Tool(name="headshot", version="1.0", options=HeadshotOptions, run=run, uses_models=True,
            summary="portrait photo -> framed, levelled, tone-corrected headshots on studio grey, a gradient, a brand "
                    "colour, a blurred office or a generated scene")
