"""Contact sheets.

contact_sheet(): one row per prompt, one column per seed, the prompt written beside its row;
optionally a header over the columns (the model of each column, when models are compared).
labelled_rows(): rows of images, each with its caption wrapped to the cell, saved atomically as JPEG or
PNG (the sheets of the tools drawn by scripts/sheet_*.py).
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageColor, ImageDraw, ImageFont

from designerbox.store.png_metadata import write_atomic


def _font(size: int):
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """The words of text in lines no wider than width pixels (a longer word stands alone)."""
    lines, line = [], ""
    for word in text.split():
        if line and draw.textlength(f"{line} {word}", font=font) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line]


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
        lines = _wrap(draw, label, font, label_width - 16)  # the prompt wrapped to the label column
        for k, text in enumerate(lines[:6]):
            draw.text((8, y + 6 + 18 * k), text, fill="black", font=font)
        for c, img in enumerate(images):
            sheet.paste(img.convert("RGB").resize((cell, cell), Image.LANCZOS), (label_width + c * (cell + 4), y))
    return sheet


def labelled_rows(rows: list[list[tuple[str, Image.Image | str]]], out: Path | str | None = None, *,
                  height: int, square: bool = False, gap: int = 10, top: int | None = None,
                  caption: int = 40, caption_above: bool = False, caption_at: tuple[int, int] = (0, 3),
                  caption_lines: int = 2, line_height: int = 17, wrap_min: int = 150, font_size: int = 14,
                  ink="#222222", background="#E6E6E6", titles: list[str] | None = None, title_size: int = 18,
                  title_band: int = 26, message_chars: int = 34, message_lines: int = 14, paste_alpha: bool = False,
                  quality: int = 90) -> Image.Image:
    """Rows of (caption, image) cells on one sheet; written to out (if given) atomically, PNG for a .png
    name and JPEG otherwise (at quality, Huffman tables optimised). Returns the sheet.

    height        every image's height in the sheet; the width keeps its aspect, or with square the
                  centred square of the image is shown height x height
    gap           between cells, rows and around the sheet (top: above the first row, default gap)
    caption       the band under each row's images (over them with caption_above) for its captions,
                  drawn at caption_at (x, y) within it, wrapped to the image's width (at least
                  wrap_min px), caption_lines lines of line_height px at most, in ink
    titles        a title per row, over it in a band of title_band px
    a cell whose image is a str (a tool's error message) shows it in red in a height x height cell,
    wrapped at message_chars characters, message_lines lines at most.
    A transparent (RGBA) image is shown over the sheet's background: composited before it is resized, or
    with paste_alpha resized and then pasted through its alpha.
    """
    font, title_font = _font(font_size), _font(title_size)
    matte = ImageColor.getrgb(background)[:3] + (255,)

    def fit(im: Image.Image) -> Image.Image | str:
        if isinstance(im, str):
            return im
        if im.mode == "RGBA" and not paste_alpha:
            im = Image.alpha_composite(Image.new("RGBA", im.size, matte), im)
        im = im if im.mode == "RGBA" else im.convert("RGB")
        if square:
            side = min(im.size)
            x, y = (im.width - side) // 2, (im.height - side) // 2
            return im.crop((x, y, x + side, y + side)).resize((height, height), Image.LANCZOS)
        return im.resize((round(im.width * height / im.height), height), Image.LANCZOS)

    sized = [[(text, fit(im)) for text, im in row] for row in rows]
    band = title_band if titles else 0
    pitch = band + height + caption + gap
    widths = [sum(height if isinstance(im, str) else im.width for _, im in row) + gap * (len(row) + 1)
              for row in sized]
    y = gap if top is None else top
    sheet = Image.new("RGB", (max(widths), y + len(rows) * pitch), background)
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(sized):
        if titles:
            draw.text((gap, y), titles[r], fill="black", font=title_font)
        y_image = y + band + (caption if caption_above else 0)
        y_caption = y + band + (0 if caption_above else height)
        x = gap
        for text, im in row:
            w = height if isinstance(im, str) else im.width
            if isinstance(im, str):  # a missing model or asset: its message, wrapped
                lines = [""]
                for word in im.split():
                    lines[-1:] = ([f"{lines[-1]} {word}".strip()] if len(lines[-1]) + len(word) < message_chars
                                  else [lines[-1], word])
                draw.multiline_text((x + 4, y_image + 8), "\n".join(lines[:message_lines]), fill="firebrick",
                                    font=font)
            else:
                sheet.paste(im, (x, y_image), im if im.mode == "RGBA" else None)
            for k, line in enumerate(_wrap(draw, text, font, max(w, wrap_min))[:caption_lines]):
                draw.text((x + caption_at[0], y_caption + caption_at[1] + line_height * k), line, font=font, fill=ink)
            x += w + gap
        y += pitch
    if out is not None:
        out = Path(out)
        buf = io.BytesIO()
        sheet.save(buf, format="PNG" if out.suffix.lower() == ".png" else "JPEG", quality=quality, optimize=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, buf.getvalue())
    return sheet
