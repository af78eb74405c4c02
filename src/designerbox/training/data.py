"""The captioned image dataset the built-in models learn from.

`build()` fetches labelled image sets through their registries (see ../shared/ASSETS.md section 2),
renders every image onto a white square, writes captions that name the thing, its style and its
main colours, drops exact and near duplicates, fixes the held-out splits, and records source and
licence per image. The readers live beside it: sources.py (emoji, clip art), iconify.py (multi-colour
icon sets), silhouettes.py (monochrome icon sets, each icon tinted one named colour), avatars.py
(generated avatars).

Output folder:
    images.safetensors   {"images": uint8 (N, S, S, 3)}, RGB on white
    meta.jsonl           one JSON object per image, same order (captions, label, style, split, licence...)
    stats.json           counts per source, style, licence and split; duplicates dropped; the held-out
                         style/concept pairs; the icon sets kept and dropped
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from designerbox.training import avatars, iconify, silhouettes
from designerbox.training.fetch import fetch_debian, fetch_npm
from designerbox.training.sources import (Item, emoji_labels, namekey, read_emoji_datasource, read_fluent3d,
                                          read_fluent_svg, read_openclipart)


@dataclass(frozen=True)
class Source:
    id: str
    registry: str  # "npm" | "debian" | "pypi" (an installed package)
    package: str
    version: str
    licence: str   # iconify: the licence of each set, recorded per image
    style: str     # the words the caption uses for this style (iconify: per set)
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
        Source("fluent-color", "npm", "fluentui-emoji", "1.3.0", "MIT", "gradient emoji"),
        Source("iconify", "npm", "@iconify/json", "2.2.535", "per set", "flat icon"),
        Source("avatars", "pypi", "python-avatars", "1.4.1", "MIT", "avatar"),
        Source("silhouettes", "npm", "@iconify/json", "2.2.535", "per set", silhouettes.STYLE),
    ]
}
LABELS = Source("emojibase", "npm", "emojibase-data", "17.0.0", "MIT", "")
DEFAULT_SOURCES = tuple(SOURCES)
NEAR_DUPLICATE_RMS = 0.01  # 16x16 RGB thumbnails (0..1) closer than this are one image (2.5/255 RMS)


# ---------------------------------------------------------------------------------------------
# colours and captions

# (name, hue range in degrees) for saturated pixels; achromatic pixels are black, grey or white
_HUES = [("red", 0, 15), ("orange", 15, 40), ("yellow", 40, 70), ("green", 70, 165),
         ("blue", 165, 255), ("purple", 255, 290), ("pink", 290, 345), ("red", 345, 361)]
_GREYS = ("black", "grey", "white")
_ORDER = ("red", "brown", "orange", "yellow", "green", "blue", "purple", "pink")  # ties go to the first


def _hsv(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Hue (degrees), saturation, value of up to ~2000 opaque pixels of an (H, W, 4) uint8 image."""
    px = rgba[rgba[..., 3] > 127][:, :3].astype(np.float32) / 255.0
    if len(px) == 0:
        return None
    hsv = np.array([colorsys.rgb_to_hsv(*p) for p in px[:: max(1, len(px) // 2000)]])
    return hsv[:, 0] * 360, hsv[:, 1], hsv[:, 2]


def _pixel_names(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A colour name per pixel: hue names (dark red/orange = brown) or black / grey / white."""
    names = np.where(v < 0.3, "black", np.where(v < 0.75, "grey", "white")).astype(object)
    chroma = (s > 0.3) & (v > 0.25)
    for name, lo, hi in _HUES:
        sel = chroma & (h >= lo) & (h < hi)
        names[sel] = "brown" if name in ("orange", "red") else name
        if name in ("orange", "red"):
            names[sel & (v >= 0.55)] = name
    return names


def main_colour(rgba: np.ndarray) -> str:
    """Name of the dominant colour of the opaque pixels of an (H, W, 4) uint8 image."""
    hsv = _hsv(rgba)
    if hsv is None:
        return "white"
    h, s, v = hsv
    chroma = (s > 0.3) & (v > 0.25)
    if chroma.mean() < 0.3:
        mean_v = v.mean()
        return "black" if mean_v < 0.3 else "grey" if mean_v < 0.75 else "white"
    counts = Counter(dict.fromkeys(_ORDER, 0))
    counts.update(_pixel_names(h, s, v)[chroma])
    return counts.most_common(1)[0][0]


def main_colours(rgba: np.ndarray, share: float = 0.25) -> list[str]:
    """The main colour, and a second one when it covers at least `share` of the opaque pixels:
    ["red", "white"], ["red", "blue"]. Beside black, grey or white (whose name comes from the mean
    brightness) only a hue counts as a second colour."""
    first = main_colour(rgba)
    hsv = _hsv(rgba)
    if hsv is None:
        return [first]
    names = _pixel_names(*hsv)
    counts = Counter(n for n in names if n != first and (first not in _GREYS or n not in _GREYS))
    if counts:
        second, n = counts.most_common(1)[0]
        if n >= share * len(names):
            return [first, second]
    return [first]


def captions_for(label: str, style: str, colours: str | list[str]) -> list[str]:
    """Caption variants for one image: with style, with colours, plain. Training picks one at random."""
    colours = [colours] if isinstance(colours, str) else colours
    words = namekey(label).split()
    coloured = label if any(c in words for c in colours) else f"{' and '.join(colours)} {label}"
    article = "an" if coloured[0] in "aeiou" else "a"
    return [f"{label}, {style}", f"{article} {coloured}, {style}", label]


# ---------------------------------------------------------------------------------------------
# squares, duplicates, splits


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


def thumbnail(rgb: np.ndarray, side: int = 16) -> np.ndarray:
    """(side * side * 3,) float32 in 0..1: the box-filtered thumbnail near duplicates are found on."""
    small = Image.fromarray(rgb).resize((side, side), Image.BOX)
    return np.asarray(small, np.float32).reshape(-1) / 255.0


def near_duplicates(thumbs: np.ndarray, rms: float = NEAR_DUPLICATE_RMS, chunk: int = 1024) -> np.ndarray:
    """For each row of `thumbs` (N, D), the index of an earlier KEPT row closer than `rms`
    (root-mean-square difference), or -1 when the row is kept. First come, first kept."""
    x = np.ascontiguousarray(thumbs, np.float32)
    n, d = x.shape
    sq = (x * x).sum(1)
    dup_of = np.full(n, -1)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        d2 = sq[start:stop, None] + sq[None, :stop] - 2.0 * (x[start:stop] @ x[:stop].T)  # (B, stop)
        rows, cols = np.nonzero(d2 < rms * rms * d)
        pairs = defaultdict(list)
        for r, c in zip(rows.tolist(), cols.tolist()):
            if c < start + r:
                pairs[start + r].append(c)
        for i in sorted(pairs):  # earlier rows of this chunk are settled before later ones
            kept = [c for c in pairs[i] if dup_of[c] < 0]
            if kept:
                dup_of[i] = kept[0]
    return dup_of


def split_of(label: str) -> str:
    """A fixed held-out split of concepts: 2% of labels, chosen by a hash of the label."""
    return "heldout" if zlib.crc32(namekey(label).encode()) % 50 == 0 else "train"


def heldout_pair_style(label: str, styles: set[str] | list[str]) -> str | None:
    """The style of `label` whose (label, style) images are held out, or None. Held out: for 2% of
    the labels drawn in at least 3 styles (by a hash of the label), the style with the smallest
    hash of (label, style), so the other styles of that concept stay in training."""
    key = namekey(label)
    if len(set(styles)) < 3 or zlib.crc32(f"pair|{key}".encode()) % 50:
        return None
    return min(sorted(set(styles)), key=lambda s: zlib.crc32(f"{key}|{s}".encode()))


# styles added after full-v1 that neither count towards nor become a held-out style/concept pair, so
# the pairs stay those of full-v1 (a model trained on full-v1 is evaluated on the same pairs)
PAIR_STYLES_IGNORED = {"silhouette"}


def assign_splits(meta: list[dict]) -> list[tuple[str, str]]:
    """Set "split" on every row: "heldout" (concepts), "heldout-pair" (style/concept pairs) or
    "train". Returns the held-out (label, style) pairs. Styles in PAIR_STYLES_IGNORED are left out
    of the pair choice (their images of a held-out concept are still held out)."""
    styles = defaultdict(set)
    for m in meta:
        if m["style"] not in PAIR_STYLES_IGNORED:
            styles[namekey(m["label"])].add(m["style"])
    pairs = {}
    for key, st in styles.items():
        if split_of(key) == "train" and (style := heldout_pair_style(key, st)):
            pairs[key] = style
    for m in meta:
        key = namekey(m["label"])
        m["split"] = split_of(key) if pairs.get(key) != m["style"] else "heldout-pair"
    return sorted(pairs.items())


# ---------------------------------------------------------------------------------------------
# the build


def read_source(sid: str, cache: Path, labels: dict[str, str], size: int, iconify_per_set: int,
                iconify_total: int, n_avatars: int, seed: int, report: dict,
                silhouette_total: int = 8000, silhouette_per_label: int = 16) -> Iterator[Item]:
    src = SOURCES[sid]
    if src.registry == "pypi":
        avatars.check_installed(src.package, src.version)
        return avatars.read_avatars(n_avatars, size * 2, seed=seed)
    pkg = (fetch_npm if src.registry == "npm" else fetch_debian)(src.package, src.version, cache)
    if sid == "silhouettes":  # ranks labels by the words of the emojibase labels and tags
        emojibase = json.loads((fetch_npm(LABELS.package, LABELS.version, cache) / "en" / "data.json").read_text())
        return silhouettes.read_silhouettes(pkg, emojibase, size * 2, per_label=silhouette_per_label,
                                            total=silhouette_total, report=report.setdefault("silhouettes", {}))
    return {
        "fluent3d": lambda: read_fluent3d(pkg, labels),
        "noto": lambda: read_emoji_datasource(pkg, labels, "google"),
        "twemoji": lambda: read_emoji_datasource(pkg, labels, "twitter"),
        "fluent-flat": lambda: read_fluent_svg(pkg, labels, size * 2, "flat"),
        "fluent-color": lambda: read_fluent_svg(pkg, labels, size * 2, "modern"),
        "openclipart": lambda: read_openclipart(pkg, size),
        "iconify": lambda: iconify.read_iconify(pkg, labels, size * 2, iconify_per_set, iconify_total,
                                                report.setdefault("iconify", {})),
    }[sid]()


def build(out: Path, cache: Path, sources: tuple[str, ...] = DEFAULT_SOURCES, size: int = 64,
          limit: int | None = None, log: Callable[[str], None] = print, *, iconify_per_set: int = 1500,
          iconify_total: int = 20000, n_avatars: int = 3000, seed: int = 0,
          near_rms: float = NEAR_DUPLICATE_RMS, silhouette_total: int = 8000, silhouette_per_label: int = 16) -> dict:
    """Build the dataset from `sources` (ids of SOURCES) into `out`; `limit` caps images per source."""
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; valid: {sorted(SOURCES)}")
    t0 = time.time()
    labels = emoji_labels(fetch_npm(LABELS.package, LABELS.version, cache))
    images, thumbs, meta, seen = [], [], [], set()
    dropped = {sid: Counter() for sid in sources}
    icon_sets: dict = {}  # {"iconify": report, "silhouettes": report}: the sets kept and dropped
    # 1. read, square, drop blanks and exact duplicates, caption
    for sid in sources:
        src, n0 = SOURCES[sid], len(meta)
        for item in read_source(sid, cache, labels, size, iconify_per_set, iconify_total, n_avatars, seed, icon_sets,
                                silhouette_total, silhouette_per_label):
            rgba = to_square(item.image, size, margin=0.04)
            if (rgba[..., 3] > 127).mean() < 0.03:  # near-blank render
                dropped[sid]["blank"] += 1
                continue
            rgb = on_white(rgba)
            digest = hashlib.sha256(rgb.tobytes()).hexdigest()
            if digest in seen:
                dropped[sid]["exact"] += 1
                continue
            seen.add(digest)
            colours, style = main_colours(rgba), item.style or src.style
            meta.append({
                "source": sid, "file": item.name, "label": item.label, "style": style, "colour": colours[0],
                "colours": colours, "captions": item.captions or captions_for(item.label, style, colours),
                "split": "", "licence": item.licence or src.licence,
                "package": f"{src.registry}:{src.package}@{src.version}",
                "attribution": src.attribution if item.attribution is None else item.attribution,
                "sha256": digest, **({"attributes": item.attributes} if item.attributes else {}),
            })
            images.append(rgb)
            thumbs.append(thumbnail(rgb))
            if limit and len(meta) - n0 >= limit:
                break
        log(f"{sid}: {len(meta) - n0} images ({dict(dropped[sid])} dropped) after {time.time() - t0:.0f} s")
    # 2. near duplicates across all sources: the first kept, later ones dropped
    dup_of = near_duplicates(np.stack(thumbs), near_rms)
    examples = []
    for i in np.nonzero(dup_of >= 0)[0]:
        dropped[meta[i]["source"]]["near"] += 1
        if len(examples) < 40:
            j = dup_of[i]
            examples.append([f"{meta[i]['source']}:{meta[i]['file']}", f"{meta[j]['source']}:{meta[j]['file']}"])
    keep = np.nonzero(dup_of < 0)[0]
    meta, images = [meta[i] for i in keep], [images[i] for i in keep]
    log(f"near duplicates: {int((dup_of >= 0).sum())} dropped")
    # 3. the held-out splits, then write
    pairs = assign_splits(meta)
    extra = {"dropped": {sid: dict(c) for sid, c in dropped.items()}, "near_duplicate_examples": examples,
             "heldout_pairs": [list(p) for p in pairs], "iconify_sets": icon_sets.get("iconify", {}),
             "silhouette_sets": icon_sets.get("silhouettes", {}),
             "build_seconds": round(time.time() - t0)}
    return write(out, np.stack(images), meta, extra)


def write(out: Path, images: np.ndarray, meta: list[dict], extra: dict | None = None) -> dict:
    """Write the dataset atomically: a temporary folder renamed into place."""
    from safetensors.numpy import save_file

    per_source_style = defaultdict(Counter)
    for m in meta:
        per_source_style[m["source"]][m["style"]] += 1
    stats = {
        "images": len(meta),
        "size": int(images.shape[1]),
        "per_source": dict(Counter(m["source"] for m in meta)),
        "per_style": dict(Counter(m["style"] for m in meta)),
        "per_split": dict(Counter(m["split"] for m in meta)),
        "per_licence": dict(Counter(m["licence"] for m in meta)),
        "per_source_style": {s: dict(c) for s, c in per_source_style.items()},
        **(extra or {}),
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


def summary(stats: dict) -> str:
    """The counts of a build as a few aligned tables (kept and dropped per source, then per style,
    licence and split)."""
    lines = [f"{'source':14}{'kept':>8}{'blank':>8}{'exact dup':>11}{'near dup':>10}  styles"]
    for sid, n in stats["per_source"].items():
        d = stats.get("dropped", {}).get(sid, {})
        styles = ", ".join(f"{k} {v}" for k, v in stats["per_source_style"][sid].items())
        lines.append(f"{sid:14}{n:>8}{d.get('blank', 0):>8}{d.get('exact', 0):>11}{d.get('near', 0):>10}  {styles}")
    lines.append(f"{'total':14}{stats['images']:>8}")
    for key in ("per_style", "per_licence", "per_split"):
        lines.append(f"{key[4:]}: " + ", ".join(f"{k} {v}" for k, v in sorted(stats[key].items(), key=lambda kv: -kv[1])))
    if "build_seconds" in stats:
        lines.append(f"built in {stats['build_seconds']} s")
    return "\n".join(lines)


def load(folder: Path) -> tuple[np.ndarray, list[dict]]:
    from safetensors.numpy import load_file

    folder = Path(folder)
    images = load_file(str(folder / "images.safetensors"))["images"]
    meta = [json.loads(line) for line in (folder / "meta.jsonl").read_text().splitlines()]
    if len(meta) != len(images):
        raise ValueError(f"{folder}: {len(images)} images but {len(meta)} metadata rows")
    return images, meta
