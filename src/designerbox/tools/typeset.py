"""Type for the marketing tool: the font table (presets/fonts.json: Debian font files and their
licences) and the layout of a headline, a subline and a call-to-action button inside a box.

fit_block: the largest headline size, from `max_px` down to `min_px` in steps of 3%, at which
  1. the headline wraps (greedy, at spaces) into at most `max_lines` lines of the box's width,
  2. the subline (at `sub_ratio` of the headline's size) into at most `sub_lines` lines,
  3. the button (its label at `cta_ratio` of the headline's size, padded) fits the width, and
  4. the whole block (headline, gap, subline, gap, button; or, in a row, the text beside the
     button) fits the box's height;
then the block is placed in the box (left or centred; top, middle or bottom). Nothing is drawn
here: the result is the geometry (baselines, ink boxes, the button's rectangle). When even
`min_px` does not fit, TextFitError says which limit was hit.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Literal

from PIL import ImageFont


class TextFitError(ValueError):
    """The text does not fit its box even at the smallest allowed size."""


class UnknownFontError(ValueError):
    pass


# --- fonts --------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def font_table() -> dict[str, dict]:
    """{font id: {"id", "name", "file", "bold", "package", "licence"}} from presets/fonts.json."""
    data = json.loads(resources.files("designerbox.presets").joinpath("fonts.json").read_text())
    return {f["id"]: f for f in data["fonts"]}


def installed_fonts() -> list[str]:
    return [fid for fid, f in font_table().items() if os.path.exists(f["file"])]


def font_info(font_id: str) -> dict:
    """The table row of an installed font; errors name the installed fonts, or the package to install."""
    table = font_table()
    if font_id not in table:
        raise UnknownFontError(f"unknown font {font_id!r}; fonts: {', '.join(installed_fonts())}")
    row = table[font_id]
    if not os.path.exists(row["file"]):
        raise UnknownFontError(f"font {font_id!r} is not installed ({row['file']} is missing): "
                               f"apt-get install {row['package']}; installed fonts: {', '.join(installed_fonts())}")
    return row


@lru_cache(maxsize=256)
def load_font(font_id: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_info(font_id)["file"], size)


# --- wrapping and fitting -----------------------------------------------------------------------

def ink_extent(font: ImageFont.FreeTypeFont, text: str) -> tuple[float, float]:
    """(left overhang, width) of a line drawn from x = 0: glyphs such as 'J' reach left of their origin,
    and a bold 'f' past its advance; both count, so no ink leaves the box."""
    left, _, right, _ = font.getbbox(text, anchor="ls")
    over = max(0.0, -left)
    return over, over + max(font.getlength(text), right)


def wrap(text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str] | None:
    """Greedy word wrap to `width` pixels of ink; None when one word alone is wider than that."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            if ink_extent(font, word)[1] > width:
                return None
            trial = f"{line} {word}" if line else word
            if ink_extent(font, trial)[1] <= width:
                line = trial
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return [ln for ln in lines if ln] or [""]


@dataclass
class Line:
    role: str                       # "headline", "subline" or "cta"
    text: str
    font: str
    size: int
    origin: tuple[float, float]     # the baseline's left end (anchor "ls"), or the centre for "cta" (anchor "mm")
    anchor: str = "ls"


@dataclass
class Block:
    lines: list[Line]
    button: tuple[int, int, int, int] | None    # the call to action's rectangle
    headline_px: int
    subline_px: int
    cta_px: int
    box: tuple[int, int, int, int]              # the block's extent
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Spec:
    headline_font: str
    body_font: str
    min_px: int
    max_px: int
    max_lines: int = 3
    sub_lines: int = 4
    sub_ratio: float = 0.46
    cta_ratio: float = 0.42
    min_sub_px: int = 12
    align: Literal["left", "center"] = "left"
    valign: Literal["top", "middle", "bottom"] = "bottom"
    direction: Literal["column", "row"] = "column"


def _text_height(font: ImageFont.FreeTypeFont, n: int, leading: float) -> tuple[float, float]:
    """(height of n lines, line pitch): ascent of the first, pitch between baselines, descent of the last."""
    ascent, descent = font.getmetrics()
    pitch = leading * font.size
    return ascent + (n - 1) * pitch + descent, pitch


def _try(box, headline: str, subline: str | None, cta: str | None, spec: Spec, h: int):
    """The block at headline size h, or (None, why it does not fit)."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    s = max(spec.min_sub_px, round(h * spec.sub_ratio))
    c = max(spec.min_sub_px, round(h * spec.cta_ratio))
    fh, fs, fc = load_font(spec.headline_font, h), load_font(spec.body_font, s), load_font(spec.headline_font, c)
    button = None
    if cta:
        pad_x, btn_h = round(1.1 * c), round(2.3 * c)
        button = (round(fc.getlength(cta)) + 2 * pad_x, btn_h)
        if button[0] > bw:
            return None, f"the call to action {cta!r} is wider than the text area ({bw} px)"
    text_w = bw - (button[0] + round(0.6 * h) if button and spec.direction == "row" else 0)
    if text_w < 2 * h:
        return None, "the text area is too narrow beside the button"
    hl = wrap(headline, fh, text_w)
    if hl is None:
        return None, f"a word of the headline is wider than the text area ({text_w} px)"
    if len(hl) > spec.max_lines:
        return None, f"the headline needs {len(hl)} lines, at most {spec.max_lines} fit the template"
    sl: list[str] = []
    if subline:
        sl = wrap(subline, fs, text_w)
        if sl is None or len(sl) > spec.sub_lines:
            return None, f"the subline needs more than {spec.sub_lines} lines"
    hh, hp = _text_height(fh, len(hl), 1.08)
    sh, sp = _text_height(fs, len(sl), 1.3) if sl else (0.0, 0.0)
    gap1 = round(0.4 * h) if sl else 0
    text_h = hh + gap1 + sh
    if spec.direction == "row":
        total = max(text_h, button[1] if button else 0)
    else:
        total = text_h + (round(0.75 * h) + button[1] if button else 0)
    if total > bh:
        return None, f"the text needs {round(total)} px of height, the text area has {bh} px"
    # place the block
    top = {"top": y0, "middle": y0 + (bh - total) / 2, "bottom": y1 - total}[spec.valign]
    widths = [ink_extent(fh, t)[1] for t in hl] + [ink_extent(fs, t)[1] for t in sl]
    block_w = max(widths) if spec.direction == "row" or not button else max(max(widths), button[0])
    left = x0 if spec.align == "left" or spec.direction == "row" else x0 + (bw - block_w) / 2
    ty = top + (total - text_h) / 2 if spec.direction == "row" else top
    lines = []
    asc_h, asc_s = fh.getmetrics()[0], fs.getmetrics()[0]
    def line_x(font, t):  # the origin that puts the line's ink at the left edge, or centred
        over, w = ink_extent(font, t)
        return over + (left if spec.align == "left" or spec.direction == "row" else x0 + (bw - w) / 2)

    for i, t in enumerate(hl):
        lines.append(Line("headline", t, spec.headline_font, h, (line_x(fh, t), ty + asc_h + i * hp)))
    sy = ty + hh + gap1
    for i, t in enumerate(sl):
        lines.append(Line("subline", t, spec.body_font, s, (line_x(fs, t), sy + asc_s + i * sp)))
    rect = None
    if button:
        w, hgt = button
        if spec.direction == "row":
            bx, by = x1 - w, top + (total - hgt) / 2
        else:
            bx = x0 if spec.align == "left" else x0 + (bw - w) / 2
            by = top + text_h + round(0.75 * h)
        rect = (round(bx), round(by), round(bx + w), round(by + hgt))
        lines.append(Line("cta", cta, spec.headline_font, c, ((rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2), "mm"))
    extent = (round(x0 if spec.direction == "row" else left), round(top),
              round(x1 if spec.direction == "row" else left + block_w), round(top + total))
    return Block(lines, rect, h, s if sl else 0, c if cta else 0, extent), None


def fit_block(box: tuple[int, int, int, int], headline: str, subline: str | None, cta: str | None,
              spec: Spec) -> Block:
    """The largest block that fits `box` (x0, y0, x1, y1), or TextFitError naming the limit."""
    if spec.min_px > spec.max_px:
        raise TextFitError(f"the text area is too small: its largest headline size ({spec.max_px} px) is under "
                           f"the smallest allowed ({spec.min_px} px)")
    h = float(spec.max_px)
    while True:
        size = max(spec.min_px, int(h))
        block, why = _try(box, headline, subline, cta, spec, size)
        if block is not None:
            if size < spec.max_px:
                block.notes.append(f"headline shrunk from {spec.max_px} px to {size} px to fit")
            return block
        if size == spec.min_px:
            raise TextFitError(f"the text does not fit even at the smallest headline size ({spec.min_px} px): "
                               f"{why}; shorten the headline ({len(headline)} characters) or the subline, or "
                               "choose a larger template")
        h *= 0.97
