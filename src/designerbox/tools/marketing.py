"""marketing: a visual from a brand kit: a hero image (the input, or drawn from a prompt by the job)
placed into a template, with a headline, a subline and a call-to-action button in the brand's colours
and fonts, laid out inside the template's safe zone with enough contrast to read.

Templates are data (presets/tool_marketing.json: the options below, per format); a brand kit is
data too (colours, fonts from presets/fonts.json, a logo file), kept per user by store/brands.py
and passed in whole as the `brand` option.

  1. the canvas in the template's surface colour; the hero cropped around its subject (faces and
     the salient blobs, tools/saliency.py) to the hero box's aspect ratio, the subject put at the
     template's focus point (away from the text), resized into the hero box;
  2. the text area: the template's text box, inset by `pad`, within the safe zone (the frame less
     its `safe` margins: the platform's UI and trimming), less the logo's corner;
  3. the text block fitted to it (tools/typeset.py: wrapping, the largest headline size that fits,
     or a TextFitError naming the limit);
  4. contrast (tools/contrast.py, WCAG 2.x): every line's ratio against the pixels under it, 4.5 for
     the subline and small text, 3 for large text. Text over the hero that fails gets a scrim (a
     gradient or panel in a kit colour, made more opaque step by step until every line passes);
     text on a flat surface that fails switches to the kit colour (or black or white) that reads;
     the button's label is chosen for its fill, the button gets an outline when its edge is under 3:1;
  5. drawn; each line's box, colour, measured ratio and requirement are recorded.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field, field_validator

from designerbox.tools import contrast
from designerbox.tools.registry import Tool, ToolImage
from designerbox.tools.saliency import faces, subject_box
from designerbox.tools.typeset import Spec, TextFitError, fit_block, font_info, font_table, load_font

Frac4 = tuple[float, float, float, float]
KitColour = Literal["primary", "secondary", "background", "text"]

__all__ = ["BrandKit", "MarketingOptions", "TextFitError", "run", "TOOL"]


class BrandColours(BaseModel):
    model_config = ConfigDict(extra="forbid")

    primary: str = "#2347B8"
    secondary: str = "#FFC914"
    background: str = "#FFFFFF"
    text: str = "#17213A"

    @field_validator("primary", "secondary", "background", "text")
    @classmethod
    def _hex(cls, v: str) -> str:
        contrast.hex_rgb(v)  # raises naming the form
        return v.upper()


class BrandFonts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    headline: str = "dejavu-sans-bold"
    body: str = "dejavu-sans"

    @field_validator("headline", "body")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in font_table():
            raise ValueError(f"unknown font {v!r}; fonts: {', '.join(font_table())}")
        return v


class BrandKit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("DesignerBox", min_length=1, max_length=64)
    colours: BrandColours = BrandColours()
    fonts: BrandFonts = BrandFonts()
    logo: str | None = Field(None, description="a logo image: a file path, or a data URL over the API "
                             "(PNG with transparency is best)")


class MarketingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    headline: str = Field("", max_length=200, description="the headline (required)")
    subline: str | None = Field(None, max_length=300, description="a line under the headline")
    cta: str | None = Field(None, max_length=40, description="the call to action on the button, e.g. 'Shop now'")
    brand: BrandKit = Field(BrandKit(), description="the brand kit (designerbox brand add; --brand NAME)")
    # the template
    width: int = Field(1080, ge=64, le=6000, description="output width in pixels")
    height: int = Field(1080, ge=64, le=6000, description="output height in pixels")
    hero_box: Frac4 = Field((0.0, 0.0, 1.0, 1.0), description="where the hero goes (x0, y0, x1, y1, shares of the frame)")
    text_box: Frac4 = Field((0.0, 0.5, 1.0, 1.0), description="where the text goes (shares of the frame)")
    safe: Frac4 = Field((0.06, 0.06, 0.06, 0.06), description="safe-zone margins: left, top, right, bottom "
                        "(shares of width and height); text never leaves it")
    pad: float = Field(0.04, ge=0.0, le=0.2, description="inset of the text box (share of the shorter side)")
    surface: KitColour = Field("background", description="the kit colour of the canvas outside the hero")
    text_colour: KitColour = Field("text", description="the kit colour the text is set in, when it reads")
    headline_colour: KitColour | None = Field(None, description="the headline's kit colour (default: text_colour)")
    cta_fill: KitColour = Field("primary", description="the button's kit colour")
    align: Literal["left", "center"] = "left"
    valign: Literal["top", "middle", "bottom"] = "bottom"
    direction: Literal["column", "row"] = Field("column", description="row: the button beside the text")
    show_subline: bool = Field(True, description="false: the template has no room for a subline")
    max_lines: int = Field(3, ge=1, le=6, description="headline lines at most")
    headline_size: tuple[float, float] = Field((0.045, 0.1), description="smallest and largest headline size, "
                                               "shares of the shorter side")
    min_px: int = Field(14, ge=8, le=200, description="no text smaller than this many pixels")
    focus: tuple[float, float] = Field((0.5, 0.5), description="where the hero's subject goes in the hero box")
    logo_corner: Literal["top-left", "top-right", "bottom-left", "bottom-right", "none"] = "top-left"
    logo_size: float = Field(0.07, ge=0.02, le=0.3, description="logo height, share of the shorter side")
    scrim: Literal["auto", "always", "never"] = Field("auto", description="a shade behind text over the hero")
    # a drawn hero
    prompt: str | None = Field(None, max_length=4000, description="draw the hero from this prompt")
    model: str | None = Field(None, description="the model that draws the prompt (default model when omitted)")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="the seed of the drawn hero")

    @field_validator("hero_box", "text_box")
    @classmethod
    def _box(cls, v: Frac4) -> Frac4:
        if not (0 <= v[0] < v[2] <= 1 and 0 <= v[1] < v[3] <= 1):
            raise ValueError(f"a box is (x0, y0, x1, y1) with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, not {v}")
        return v

    @field_validator("safe")
    @classmethod
    def _safe(cls, v: Frac4) -> Frac4:
        if min(v) < 0 or v[0] + v[2] >= 0.9 or v[1] + v[3] >= 0.9:
            raise ValueError(f"safe margins are shares in 0..1 leaving at least 10% of each side, not {v}")
        return v

    @field_validator("headline_size")
    @classmethod
    def _sizes(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1] <= 0.5:
            raise ValueError(f"headline_size is (smallest, largest) with 0 < smallest <= largest <= 0.5, not {v}")
        return v


# --- 1. the hero --------------------------------------------------------------------------------

def place_hero(image: Image.Image, size: tuple[int, int], focus: tuple[float, float]) -> tuple[Image.Image, dict]:
    """The largest window of the box's aspect ratio, the subject put at `focus` (then slid to hold the
    subject's box when it can), resized to `size`."""
    rgb = np.asarray(image.convert("RGB"))
    ih, iw = rgb.shape[:2]
    w, h = size
    found = faces(rgb)
    (sx0, sy0, sx1, sy1), (cx, cy) = subject_box(rgb, found)
    aspect = w / h
    cw, ch = (iw, iw / aspect) if iw / aspect <= ih else (ih * aspect, ih)
    x0 = min(max(cx - focus[0] * cw, sx1 - cw), sx0) if sx1 - sx0 <= cw else cx - cw / 2
    y0 = min(max(cy - focus[1] * ch, sy1 - ch), sy0) if sy1 - sy0 <= ch else cy - ch / 2
    x0, y0 = min(max(x0, 0.0), iw - cw), min(max(y0, 0.0), ih - ch)
    box = (x0, y0, x0 + cw, y0 + ch)
    out = image.convert("RGB").resize((w, h), Image.LANCZOS, box=box, reducing_gap=3.0)
    return out, {"crop": [round(v, 1) for v in box], "subject_box": [sx0, sy0, sx1, sy1],
                 "faces": [list(f) for f in found], "enlarged": round(w / cw, 3) if w > cw else None}


# --- 2. the text area ---------------------------------------------------------------------------

def _px(box: Frac4, W: int, H: int) -> tuple[int, int, int, int]:
    return round(box[0] * W), round(box[1] * H), round(box[2] * W), round(box[3] * H)


def _logo(opts: MarketingOptions, safe: tuple[int, int, int, int], canvas: Image.Image) -> dict | None:
    """The logo scaled into its corner of the safe zone. When it stands out from what is under it by less
    than 3:1 (WCAG 1.4.11, the lower quartile over its opaque pixels), it gets a plate in the kit colour
    that sets it off best, and moves inward so the plate stays in the safe zone."""
    if not opts.brand.logo or opts.logo_corner == "none":
        return None
    from designerbox.tools.image_input import load_option_image

    logo = load_option_image(opts.brand.logo, name="brand.logo", max_pixels=4_000_000).image.convert("RGBA")
    bbox = logo.getchannel("A").point(lambda a: 255 if a > 8 else 0).getbbox()
    if bbox is None:
        raise ValueError(f"the logo {opts.brand.logo} is fully transparent")
    logo = logo.crop(bbox)  # its transparent margins would push it off the corner
    lh = max(16, round(opts.logo_size * min(opts.width, opts.height)))
    lw = max(1, round(logo.width * lh / logo.height))
    if lw > (safe[2] - safe[0]) // 3:  # a wide wordmark: bound by a third of the safe width
        lw = (safe[2] - safe[0]) // 3
        lh = max(1, round(logo.height * lw / logo.width))
    logo = logo.resize((lw, lh), Image.LANCZOS)
    left, top = opts.logo_corner.endswith("left"), opts.logo_corner.startswith("top")
    x, y = (safe[0] if left else safe[2] - lw), (safe[1] if top else safe[3] - lh)
    px = np.asarray(logo)
    opaque = px[..., 3] > 128
    ink = px[..., :3][opaque]
    under = np.asarray(canvas)[y:y + lh, x:x + lw][opaque]
    ratio = float(np.percentile(contrast.ratios(ink, under), 25))
    info = {"image": logo, "xy": (x, y), "box": (x, y, x + lw, y + lh), "ratio": round(ratio, 2), "plate": None}
    if ratio < contrast.NON_TEXT:
        kit = opts.brand.colours
        score = lambda c: np.percentile(contrast.ratios(ink, np.float32(contrast.hex_rgb(c))), 25)  # noqa: E731
        plate = max((kit.text, kit.primary, kit.background, kit.secondary), key=score)  # a kit colour when one works
        if score(plate) < contrast.NON_TEXT:
            plate = max(("#FFFFFF", "#000000"), key=score)
        pad = max(4, round(0.22 * lh))
        x, y = x + (pad if left else -pad), y + (pad if top else -pad)
        info.update(xy=(x, y), box=(x - pad, y - pad, x + lw + pad, y + lh + pad), plate=plate,
                    plate_ratio=round(float(np.percentile(contrast.ratios(ink, np.float32(contrast.hex_rgb(plate))),
                                                          25)), 2))
    return info


def text_area(opts: MarketingOptions, safe, logo_box) -> tuple[int, int, int, int]:
    W, H = opts.width, opts.height
    pad = round(opts.pad * min(W, H))
    x0, y0, x1, y1 = _px(opts.text_box, W, H)
    x0, y0, x1, y1 = max(x0 + pad, safe[0]), max(y0 + pad, safe[1]), min(x1 - pad, safe[2]), min(y1 - pad, safe[3])
    if logo_box is not None:  # keep clear of the logo: give up the band it sits in
        lx0, ly0, lx1, ly1 = logo_box
        if lx0 < x1 and lx1 > x0 and ly0 < y1 and ly1 > y0:
            gap = pad or round(0.02 * min(W, H))
            if opts.logo_corner.startswith("top"):
                y0 = max(y0, ly1 + gap)
            else:
                y1 = min(y1, ly0 - gap)
    if x1 - x0 < 16 or y1 - y0 < 16:
        raise TextFitError(f"the text area is too small ({max(0, x1 - x0)}x{max(0, y1 - y0)} px): "
                           "check text_box, safe and pad")
    return x0, y0, x1, y1


# --- 4. contrast --------------------------------------------------------------------------------

def _ink_box(draw: ImageDraw.ImageDraw, line) -> tuple[int, int, int, int]:
    f = load_font(line.font, line.size)
    return tuple(int(v) for v in draw.textbbox(line.origin, line.text, font=f, anchor=line.anchor))


def _measure(canvas: np.ndarray, lines, boxes, colours: dict[str, str]) -> list[dict]:
    """Every headline and subline line against the pixels under it."""
    rows = []
    for line, (x0, y0, x1, y1) in zip(lines, boxes):
        if line.role == "cta":
            continue
        colour = colours[line.role]
        bold = font_info(line.font)["bold"]
        need = contrast.required(line.size, bold, body=line.role == "subline")
        ratio = contrast.ratio_over(colour, canvas[max(0, y0):y1, max(0, x0):x1])
        rows.append({"role": line.role, "text": line.text, "colour": colour, "ratio": round(ratio, 2),
                     "required": need, "passes": ratio >= need})
    return rows


def _scrim(canvas: np.ndarray, block, colour: str, alpha: float, opts) -> np.ndarray:
    """A shade in `colour` behind the block: a gradient band from the frame's edge (text at the top or
    bottom), or a rounded panel (text in the middle)."""
    H, W = canvas.shape[:2]
    h = block.headline_px
    mask = np.zeros((H, W), np.float32)
    x0, y0, x1, y1 = block.box
    if opts.valign == "middle":
        pad = round(0.6 * h)
        panel = Image.new("L", (W, H), 0)
        ImageDraw.Draw(panel).rounded_rectangle((x0 - pad, y0 - pad, x1 + pad, y1 + pad), radius=pad, fill=255)
        mask = np.asarray(panel, np.float32) / 255
    else:
        ax0, ax1 = _px(opts.text_box, W, H)[0::2]
        ramp = 1.6 * h
        yy = np.arange(H, dtype=np.float32)
        if opts.valign == "bottom":
            t = np.clip((yy - (y0 - 0.3 * h - ramp)) / ramp, 0, 1)
        else:
            t = np.clip(((y1 + 0.3 * h + ramp) - yy) / ramp, 0, 1)
        mask[:, ax0:ax1] = (t * t * (3 - 2 * t))[:, None]  # smoothstep
    a = (alpha * mask)[..., None]
    return canvas * (1 - a) + np.float32(contrast.hex_rgb(colour)) * a


def fix_contrast(arr: np.ndarray, block, boxes, opts: MarketingOptions):
    """(canvas, colours per role, measured rows, fixes): the kit's preferred text colours where they read;
    else, over the hero, a scrim made more opaque in steps of 0.05 until every line passes; and where a
    line still fails (a flat surface, or scrim=never), its role switches to the colour that reads best."""
    colour = partial(getattr, opts.brand.colours)
    colours = {"headline": colour(opts.headline_colour or opts.text_colour), "subline": colour(opts.text_colour)}
    rows = _measure(arr, block.lines, boxes, colours)
    fixes = []
    hb = _px(opts.hero_box, opts.width, opts.height)
    over_hero = block.box[0] < hb[2] and block.box[2] > hb[0] and block.box[1] < hb[3] and block.box[3] > hb[1]
    if over_hero and opts.scrim != "never" and (opts.scrim == "always" or not all(r["passes"] for r in rows)):
        text_rgb = colours["subline"]
        shade = next((c for c in (colour(k) for k in ("text", "background", "primary", "secondary"))
                      if contrast.contrast_ratio(c, text_rgb) >= 7.0),
                     contrast.best_colour(["#000000", "#FFFFFF"], text_rgb)[0])
        base = arr
        for alpha in np.arange(0.35 if opts.scrim == "auto" else 0.55, 0.951, 0.05):
            arr = _scrim(base, block, shade, float(alpha), opts)
            rows = _measure(arr, block.lines, boxes, colours)
            if all(r["passes"] for r in rows):
                break
        fixes.append({"fix": "scrim", "colour": shade, "opacity": round(float(alpha), 2),
                      "shape": "panel" if opts.valign == "middle" else "gradient"})
    if not all(r["passes"] for r in rows):
        candidates = [colour(k) for k in ("text", "background", "primary", "secondary")] + ["#000000", "#FFFFFF"]
        for role in ("headline", "subline"):
            mine = [bx for ln, bx in zip(block.lines, boxes) if ln.role == role]
            if not mine or all(r["passes"] for r in rows if r["role"] == role):
                continue
            pixels = np.concatenate([arr[max(0, y0):y1, max(0, x0):x1].reshape(-1, 3) for x0, y0, x1, y1 in mine])
            best = max(candidates, key=lambda c: contrast.ratio_over(c, pixels))
            fixes.append({"fix": "text colour", "role": role, "from": colours[role], "to": best})
            colours[role] = best
        rows = _measure(arr, block.lines, boxes, colours)
    return arr, colours, rows, fixes


def _button(draw: ImageDraw.ImageDraw, arr: np.ndarray, block, opts: MarketingOptions, bold: bool) -> dict:
    """The call to action: its label in the kit colour (else black or white) that reads on its fill, and
    an outline when the button's edge is under 3:1 against what surrounds it (WCAG 1.4.11)."""
    colour = partial(getattr, opts.brand.colours)
    fill = colour(opts.cta_fill)
    label, label_ratio = contrast.best_colour([colour("background"), colour("text"), "#FFFFFF", "#000000"], fill)
    for k in ("background", "text"):  # a kit colour that passes comes first
        if colour(k) != fill and contrast.contrast_ratio(colour(k), fill) >= contrast.BODY:
            label, label_ratio = colour(k), contrast.contrast_ratio(colour(k), fill)
            break
    bx0, by0, bx1, by1 = block.button
    ring = np.concatenate([arr[max(0, by0 - 6):by0, bx0:bx1].reshape(-1, 3), arr[by1:by1 + 6, bx0:bx1].reshape(-1, 3),
                           arr[by0:by1, max(0, bx0 - 6):bx0].reshape(-1, 3), arr[by0:by1, bx1:bx1 + 6].reshape(-1, 3)])
    edge = contrast.ratio_over(fill, ring) if len(ring) else 21.0
    outline = None
    if edge < contrast.NON_TEXT:
        outline = contrast.best_colour([colour("text"), colour("background"), "#000000", "#FFFFFF"], fill)[0]
    draw.rounded_rectangle(block.button, radius=round(0.22 * (by1 - by0)), fill=fill, outline=outline,
                           width=max(2, round(0.06 * (by1 - by0))) if outline else 0)
    line = next(ln for ln in block.lines if ln.role == "cta")
    need = contrast.required(line.size, bold)
    return {"text": line.text, "fill": fill, "colour": label, "ratio": round(label_ratio, 2), "required": need,
            "passes": label_ratio >= need, "edge_ratio": round(edge, 2), "outline": outline, "box": list(block.button)}


# --- the tool -----------------------------------------------------------------------------------

def run(image: Image.Image, opts: MarketingOptions) -> list[ToolImage]:
    if not opts.headline.strip():
        raise ValueError("the marketing tool needs a headline (--set headline='...')")
    kit, W, H = opts.brand, opts.width, opts.height
    fonts = {role: font_info(fid) for role, fid in (("headline", kit.fonts.headline), ("body", kit.fonts.body))}
    colour = partial(getattr, kit.colours)
    # 1. canvas and hero
    canvas = Image.new("RGB", (W, H), colour(opts.surface))
    if image.mode == "RGBA":  # a cut-out hero (the product tool's transparent PNG) stands on the surface colour
        base = Image.new("RGBA", image.size, colour(opts.surface))
        base.alpha_composite(image)
        image = base.convert("RGB")
    hx0, hy0, hx1, hy1 = _px(opts.hero_box, W, H)
    hero, hero_info = place_hero(image, (hx1 - hx0, hy1 - hy0), opts.focus)
    canvas.paste(hero, (hx0, hy0))
    # 2. the safe zone, the logo and the text area
    l, t, r, b = opts.safe
    safe = (round(l * W), round(t * H), W - round(r * W), H - round(b * H))
    logo = _logo(opts, safe, canvas)
    logo_box = None if logo is None else logo["box"]
    area = text_area(opts, safe, logo_box)
    # 3. the text block
    short = min(W, H)
    lo, hi = max(opts.min_px, round(opts.headline_size[0] * short)), max(opts.min_px, round(opts.headline_size[1] * short))
    spec = Spec(kit.fonts.headline, kit.fonts.body, lo, hi, max_lines=opts.max_lines, align=opts.align,
                valign=opts.valign, direction=opts.direction, min_sub_px=opts.min_px)
    block = fit_block(area, opts.headline.strip(), opts.subline if opts.show_subline else None, opts.cta, spec)
    draw = ImageDraw.Draw(canvas)
    boxes = [_ink_box(draw, ln) for ln in block.lines]
    # 4. contrast: preferred colours; a scrim over the hero; another colour on a flat surface; the button
    arr, colours, rows, fixes = fix_contrast(np.asarray(canvas, np.float32), block, boxes, opts)
    canvas = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    cta = _button(draw, arr, block, opts, fonts["headline"]["bold"]) if block.button else None
    if cta:
        colours["cta"] = cta["colour"]
    # 5. draw
    for ln in block.lines:
        draw.text(ln.origin, ln.text, font=load_font(ln.font, ln.size), fill=colours[ln.role], anchor=ln.anchor)
    if logo is not None:
        if logo["plate"]:
            pad = logo["xy"][0] - logo["box"][0]
            draw.rounded_rectangle(logo["box"], radius=pad, fill=logo["plate"])
        canvas.paste(logo["image"], logo["xy"], logo["image"])
    text_boxes = [{"role": ln.role, "text": ln.text, "box": list(bx)} for ln, bx in zip(block.lines, boxes)]
    inside = all(safe[0] <= bx[0] and safe[1] <= bx[1] and bx[2] <= safe[2] and bx[3] <= safe[3]
                 for bx in boxes + ([block.button] if block.button else []))
    details = {"size": [W, H], "brand": kit.name, "hero": hero_info, "safe_zone": list(safe), "text_area": list(area),
               "text_boxes": text_boxes, "inside_safe_zone": inside, "contrast": rows, "cta": cta, "fixes": fixes,
               "sizes_px": {"headline": block.headline_px, "subline": block.subline_px, "cta": block.cta_px},
               "notes": block.notes, "logo_box": list(logo_box) if logo_box else None,
               "logo": dict({k: v for k, v in logo.items() if k != "image"}, size=list(logo["image"].size))
               if logo else None,
               "fonts": {role: {"id": f["id"], "name": f["name"], "package": f["package"], "licence": f["licence"]}
                         for role, f in fonts.items()}}
    return [ToolImage(name=f"{W}x{H}", image=canvas, details=details)]


TOOL = Tool(name="marketing", version="1.0", options=MarketingOptions, run=run, prompt_field="prompt",
            summary="a hero image (uploaded or drawn) in a brand kit's template: headline, subline and call to "
                    "action, fitted inside the safe zone with WCAG contrast checked")
