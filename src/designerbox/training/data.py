"""The captioned image dataset the built-in models learn from.

`build()` fetches labelled image sets through their registries (see ../shared/ASSETS.md section 2),
renders every image onto a white square, writes a caption that names the thing, its style and
its main colour, drops exact duplicates, and records source and licence per image.

Output folder:
    images.safetensors   {"images": uint8 (N, S, S, 3)}, RGB on white
    meta.jsonl           one JSON object per image, same order (caption, label, style, licence...)
    stats.json           counts per source and style
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from designerbox.training.fetch import fetch_debian, fetch_npm


@dataclass(frozen=True)
class Source:
    id: str
    registry: str  # "npm" | "debian"
    package: str
    version: str
    licence: str
    style: str  # the words the caption uses for this style
    attribution: str = ""


SOURCES: dict[str, Source] = {
    s.id: s
    for s in [
        Source("fluent3d", "npm", "@lobehub/fluent-emoji-3d", "1.1.0", "MIT", "3d"),
        Source("noto", "npm", "emoji-datasource-google", "16.0.0", "Apache-2.0", "emoji"),
        Source("twemoji", "npm", "emoji-datasource-twitter", "16.0.0", "CC-BY-4.0", "flat emoji",
               attribution="Twemoji graphics by Twitter, Inc and other contributors, CC-BY 4.0"),
        Source("fluent-flat", "npm", "fluentui-emoji", "1.3.0", "MIT", "flat icon"),
        Source("openclipart", "debian", "openclipart-svg", "1:0.18+dfsg-19", "public-domain", "clip art"),
    ]
}
LABELS = Source("emojibase", "npm", "emojibase-data", "17.0.0", "MIT", "")
DEFAULT_SOURCES = tuple(SOURCES)


# ---------------------------------------------------------------------------------------------
# labels and colours


def emoji_labels(pkg: Path) -> dict[str, str]:
    """Emojibase hexcode (upper case, without FE0F) -> English label, skin-tone variants excluded."""
    data = json.loads((pkg / "en" / "data.json").read_text())
    return {_hexkey(e["hexcode"]): e["label"] for e in data}


def _hexkey(code: str) -> str:
    return "-".join(p for p in code.upper().replace("_", "-").split("-") if p != "FE0F")


def _namekey(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


# (name, hue range in degrees) for saturated pixels; achromatic pixels are black, grey or white
_HUES = [("red", 0, 15), ("orange", 15, 40), ("yellow", 40, 70), ("green", 70, 165),
         ("blue", 165, 255), ("purple", 255, 290), ("pink", 290, 345), ("red", 345, 361)]


def main_colour(rgba: np.ndarray) -> str:
    """Name of the dominant colour of the opaque pixels of an (H, W, 4) uint8 image."""
    px = rgba[rgba[..., 3] > 127][:, :3].astype(np.float32) / 255.0
    if len(px) == 0:
        return "white"
    hsv = np.array([colorsys.rgb_to_hsv(*p) for p in px[:: max(1, len(px) // 2000)]])
    h, s, v = hsv[:, 0] * 360, hsv[:, 1], hsv[:, 2]
    chroma = (s > 0.3) & (v > 0.25)
    if chroma.mean() < 0.3:
        mean_v = v.mean()
        return "black" if mean_v < 0.3 else "grey" if mean_v < 0.75 else "white"
    counts = Counter()
    for name, lo, hi in _HUES:
        sel = chroma & (h >= lo) & (h < hi)
        counts[name] += int(sel.sum())
        if name in ("orange", "red"):  # dark orange / red reads as brown
            counts["brown"] += int((sel & (v < 0.55)).sum())
            counts[name] -= int((sel & (v < 0.55)).sum())
    return counts.most_common(1)[0][0]


def captions_for(label: str, style: str, colour: str) -> list[str]:
    """Caption variants for one image: with style, with colour, plain. Training picks one at random."""
    coloured = label if colour in _namekey(label).split() else f"{colour} {label}"
    article = "an" if coloured[0] in "aeiou" else "a"
    return [f"{label}, {style}", f"{article} {coloured}, {style}", label]


# ---------------------------------------------------------------------------------------------
# rendering


def to_square(img: Image.Image, size: int, margin: float = 0.0) -> np.ndarray:
    """Fit an RGBA image into a transparent size x size square (aspect kept), return (S, S, 4) uint8."""
    img = img.convert("RGBA")
    box = img.getbbox()
    if box:
        img = img.crop(box)
    inner = max(1, round(size * (1 - 2 * margin)))
    scale = inner / max(img.size)
    new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    img = img.resize(new, Image.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    canvas.paste(img, ((size - new[0]) // 2, (size - new[1]) // 2))
    return np.asarray(canvas)


def on_white(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * a + 255.0 * (1 - a)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def render_svg(path: Path, px: int) -> Image.Image | None:
    """Render an SVG with resvg, falling back to CairoSVG for files resvg refuses; None if both fail."""
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


# ---------------------------------------------------------------------------------------------
# one reader per source: yields (file name, label, RGBA image)

Item = tuple[str, str, Image.Image]


def read_fluent3d(pkg: Path, labels: dict[str, str]) -> Iterator[Item]:
    for f in sorted((pkg / "assets").glob("*.webp")):
        label = labels.get(_hexkey(f.stem))
        if label:
            yield f.name, label, Image.open(f)


def read_emoji_datasource(pkg: Path, labels: dict[str, str], folder: str) -> Iterator[Item]:
    for e in json.loads((pkg / "emoji.json").read_text()):
        f = pkg / "img" / folder / "64" / e["image"]
        label = labels.get(_hexkey(e["unified"]))
        if label and f.exists():
            yield f.name, label, Image.open(f)


def read_fluent_flat(pkg: Path, labels: dict[str, str], px: int) -> Iterator[Item]:
    by_name = {_namekey(v): v for v in labels.values()}
    for f in sorted((pkg / "icons" / "flat").glob("*.svg")):
        if _SKIN_TONE.search(f.stem):  # one image per concept; the default tone is kept
            continue
        stem = f.stem.removesuffix("-default")
        label = by_name.get(_namekey(stem), _namekey(stem))
        img = render_svg(f, px)
        if img is not None:
            yield f.name, label, img


_SKIN_TONE = re.compile(r"-(light|medium-light|medium|medium-dark|dark)$")
_TITLE = re.compile(r"<dc:title>([^<]{2,80})</dc:title>")


def _clean_title(text: str) -> str:
    return " ".join(w for w in _namekey(text).split() if not w.isdigit())


def read_openclipart(root: Path, px: int) -> Iterator[Item]:
    for f in sorted((root / "usr/share/openclipart/svg").rglob("*.svg")):
        m = _TITLE.search(f.read_text(errors="replace")[:20000])
        title = _clean_title(m.group(1)) if m else ""
        if not title or title in ("untitled", "open clip art library") or len(title.split()) > 6 \
                or "collection" in title:
            title = _clean_title(f.stem.replace("_", " "))
        img = render_svg(f, px * 2)
        if img is not None:
            yield str(f.relative_to(root)), title, img


# ---------------------------------------------------------------------------------------------


def split_of(label: str) -> str:
    """A fixed held-out split of concepts: 2% of labels, chosen by a hash of the label."""
    return "heldout" if zlib.crc32(_namekey(label).encode()) % 50 == 0 else "train"


def build(out: Path, cache: Path, sources: tuple[str, ...] = DEFAULT_SOURCES, size: int = 64,
          limit: int | None = None, log: Callable[[str], None] = print) -> dict:
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; valid: {sorted(SOURCES)}")
    labels = emoji_labels(fetch_npm(LABELS.package, LABELS.version, cache))
    images, meta, seen = [], [], set()
    for sid in sources:
        src = SOURCES[sid]
        fetch = fetch_npm if src.registry == "npm" else fetch_debian
        pkg = fetch(src.package, src.version, cache)
        reader = {
            "fluent3d": lambda: read_fluent3d(pkg, labels),
            "noto": lambda: read_emoji_datasource(pkg, labels, "google"),
            "twemoji": lambda: read_emoji_datasource(pkg, labels, "twitter"),
            "fluent-flat": lambda: read_fluent_flat(pkg, labels, size * 2),
            "openclipart": lambda: read_openclipart(pkg, size),
        }[sid]
        n0 = len(meta)
        for name, label, img in reader():
            rgba = to_square(img, size, margin=0.04)
            if (rgba[..., 3] > 127).mean() < 0.03:  # near-blank render
                continue
            rgb = on_white(rgba)
            digest = hashlib.sha256(rgb.tobytes()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            colour = main_colour(rgba)
            meta.append({
                "source": sid, "file": name, "label": label, "style": src.style, "colour": colour,
                "captions": captions_for(label, src.style, colour), "split": split_of(label),
                "licence": src.licence, "package": f"{src.registry}:{src.package}@{src.version}",
                "attribution": src.attribution, "sha256": digest,
            })
            images.append(rgb)
            if limit and len(meta) - n0 >= limit:
                break
        log(f"{sid}: {len(meta) - n0} images")
    return write(out, np.stack(images), meta)


def write(out: Path, images: np.ndarray, meta: list[dict]) -> dict:
    """Write the dataset atomically: a temporary folder renamed into place."""
    from safetensors.numpy import save_file

    stats = {
        "images": len(meta),
        "size": int(images.shape[1]),
        "per_source": dict(Counter(m["source"] for m in meta)),
        "per_style": dict(Counter(m["style"] for m in meta)),
        "per_split": dict(Counter(m["split"] for m in meta)),
        "per_licence": dict(Counter(m["licence"] for m in meta)),
    }
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({"images": np.ascontiguousarray(images)}, str(tmp / "images.safetensors"))
    (tmp / "meta.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    (tmp / "stats.json").write_text(json.dumps(stats, indent=2))
    if out.exists():
        old = out.with_name(out.name + ".old")
        out.rename(old)
        tmp.rename(out)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        tmp.rename(out)
    return stats


def load(folder: Path) -> tuple[np.ndarray, list[dict]]:
    from safetensors.numpy import load_file

    folder = Path(folder)
    images = load_file(str(folder / "images.safetensors"))["images"]
    meta = [json.loads(line) for line in (folder / "meta.jsonl").read_text().splitlines()]
    if len(meta) != len(images):
        raise ValueError(f"{folder}: {len(images)} images but {len(meta)} metadata rows")
    return images, meta
