"""Readers of the emoji and clip-art packages: each yields `Item`s (file name, label, RGBA image).

Emoji labels come from emojibase (joined on code points, or on the file name for the Fluent
SVGs); clip-art titles from the RDF metadata inside each SVG. The icon sets (iconify.py) and the
generated avatars (avatars.py) have their own modules and yield the same `Item`.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Iterator, NamedTuple

from PIL import Image


class Item(NamedTuple):
    """One image as a reader yields it. The optional fields override the source's defaults."""

    name: str                        # file (or set:key) inside the package, recorded per image
    label: str                       # the thing, in words; captions and splits are built on it
    image: Image.Image
    style: str | None = None         # a set's own style word (iconify: "outline" or "flat icon")
    licence: str | None = None       # a set's own licence (iconify sets differ)
    attribution: str | None = None
    captions: list[str] | None = None  # captions written by the reader (avatars: from attributes)
    attributes: dict | None = None   # what the image was made from (avatars)


def namekey(text: str) -> str:
    """Lower case words of a label, for joining names from different packages."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def hexkey(code: str) -> str:
    return "-".join(p for p in code.upper().replace("_", "-").split("-") if p != "FE0F")


def emoji_labels(pkg: Path) -> dict[str, str]:
    """Emojibase hexcode (upper case, without FE0F) -> English label, skin-tone variants excluded."""
    data = json.loads((pkg / "en" / "data.json").read_text())
    return {hexkey(e["hexcode"]): e["label"] for e in data}


# ---------------------------------------------------------------------------------------------
# SVG rendering


def render_svg(path: Path, px: int) -> Image.Image | None:
    """Render an SVG file with resvg, falling back to CairoSVG for files resvg refuses; None if both fail."""
    import resvg_py

    try:
        data = bytes(resvg_py.svg_to_bytes(svg_path=str(path), width=px))
        return Image.open(io.BytesIO(data))
    except Exception as resvg_error:  # resvg raises plain Exceptions on unsupported files
        try:
            import cairosvg

            return Image.open(io.BytesIO(cairosvg.svg2png(url=str(path), output_width=px)))
        except Exception as cairo_error:
            print(f"skip {path.name}: resvg: {resvg_error}; cairosvg: {cairo_error}")
            return None


def render_svg_string(svg: str, px: int, name: str = "svg") -> Image.Image | None:
    """Render SVG markup with resvg at `px` pixels wide; None (with a note naming it) if resvg refuses it."""
    import resvg_py

    try:
        return Image.open(io.BytesIO(bytes(resvg_py.svg_to_bytes(svg_string=svg, width=px))))
    except Exception as error:  # resvg raises plain Exceptions (ValueError, or its own) on bad markup
        print(f"skip {name}: resvg: {error}")
        return None


# ---------------------------------------------------------------------------------------------
# emoji


def read_fluent3d(pkg: Path, labels: dict[str, str]) -> Iterator[Item]:
    for f in sorted((pkg / "assets").glob("*.webp")):
        label = labels.get(hexkey(f.stem))
        if label:
            yield Item(f.name, label, Image.open(f))


def read_emoji_datasource(pkg: Path, labels: dict[str, str], folder: str) -> Iterator[Item]:
    for e in json.loads((pkg / "emoji.json").read_text()):
        f = pkg / "img" / folder / "64" / e["image"]
        label = labels.get(hexkey(e["unified"]))
        if label and f.exists():
            yield Item(f.name, label, Image.open(f))


_SKIN_TONE = re.compile(r"-(light|medium-light|medium|medium-dark|dark)$")


def read_fluent_svg(pkg: Path, labels: dict[str, str], px: int, folder: str = "flat") -> Iterator[Item]:
    """fluentui-emoji `icons/<folder>/*.svg` ("flat" or "modern", the colour style); labels joined
    on the file name, skin-tone variants skipped (one image per concept, the default tone)."""
    by_name = {namekey(v): v for v in labels.values()}
    for f in sorted((pkg / "icons" / folder).glob("*.svg")):
        if _SKIN_TONE.search(f.stem):
            continue
        stem = f.stem.removesuffix("-default")
        label = by_name.get(namekey(stem), namekey(stem))
        img = render_svg(f, px)
        if img is not None:
            yield Item(f.name, label, img)


# ---------------------------------------------------------------------------------------------
# clip art

_TITLE = re.compile(r"<dc:title>([^<]{2,80})</dc:title>")


def _clean_title(text: str) -> str:
    return " ".join(w for w in namekey(text).split() if not w.isdigit())


def read_openclipart(root: Path, px: int) -> Iterator[Item]:
    for f in sorted((root / "usr/share/openclipart/svg").rglob("*.svg")):
        m = _TITLE.search(f.read_text(errors="replace")[:20000])
        title = _clean_title(m.group(1)) if m else ""
        if not title or title in ("untitled", "open clip art library") or len(title.split()) > 6 \
                or "collection" in title:
            title = _clean_title(f.stem.replace("_", " "))
        img = render_svg(f, px * 2)
        if img is not None:
            yield Item(str(f.relative_to(root)), title, img)
