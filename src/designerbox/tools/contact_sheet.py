"""A contact sheet: one row per prompt, one column per seed, the prompt written beside its row;
optionally a header over the columns (the model of each column, when models are compared)."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont


def _font(size: int):
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def contact_sheet(rows: list[tuple[str, list[Image.Image]]], cell: int = 128, label_width: int = 260,
                  title: str = "", headers: list[str] | None = None) -> Image.Image:
    cols = max(len(images) for _, images in rows)
    top = (28 if title else 0) + (20 if headers else 0)
    sheet = Image.new("RGB", (label_width + cols * (cell + 4) + 4, top + len(rows) * (cell + 4) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    font = _font(14)
    if title:
        draw.text((8, 6), title, fill="black", font=font)
    for c, text in enumerate(headers or []):  # the name once over each run of equal headers
        if c == 0 or headers[c - 1] != text:
            draw.text((label_width + c * (cell + 4), top - 18), text, fill="black", font=font)
    for r, (label, images) in enumerate(rows):
        y = top + 4 + r * (cell + 4)
        words, line, lines = label.split(), "", []
        for w in words:  # wrap the prompt to the label column
            if draw.textlength(f"{line} {w}".strip(), font=font) > label_width - 16 and line:
                lines.append(line)
                line = w
            else:
                line = f"{line} {w}".strip()
        lines.append(line)
        for k, text in enumerate(lines[:6]):
            draw.text((8, y + 6 + 18 * k), text, fill="black", font=font)
        for c, img in enumerate(images):
            sheet.paste(img.convert("RGB").resize((cell, cell), Image.LANCZOS), (label_width + c * (cell + 4), y))
    return sheet
