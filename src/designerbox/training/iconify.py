"""Multi-colour icon sets from `@iconify/json`: which sets may be used, and their icons with labels.

The package holds 238 sets (https://iconify.design/docs/types/iconify-json.html):
    collections.json     prefix -> {name, author, license: {title, spdx, url}, category, palette, ...}
    json/<prefix>.json   {prefix, icons: {key: {body, width?, height?, left?, top?, hidden?}},
                          aliases, width?, height?, left?, top?, suffixes?}
An icon's SVG is its `body` inside `<svg viewBox="left top width height">`; a field missing on the
icon falls back to the set's value, then to 0, 0, 16, 16. Aliases (renamed or flipped copies) are
not read.

Kept: sets with `palette: true` (multi-colour) under a permissive licence, minus logo, brand and
emoji sets (see `set_verdict`). Label: the icon key in words, without the set's variant suffix and
numbers ("person-warning-24" -> "person warning"); flag sets are labelled by emojibase ("fr" ->
"flag: France") so they join the emoji flags. One icon per (label, variant) per set.
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path
from typing import Iterator

from designerbox.training.sources import Item, render_svg_string

PERMISSIVE = {"MIT", "Apache-2.0", "CC0-1.0", "CC-BY-4.0", "CC-BY-3.0", "ISC", "BSD-2-Clause",
              "BSD-3-Clause", "Unlicense"}
NEEDS_ATTRIBUTION = {"CC-BY-4.0", "CC-BY-3.0"}

DROP_CATEGORIES = {
    "Logos": "logos and trademarks",
    "Brand / Social": "logos and trademarks",
    "Programming": "technology logos and file-type icons drawn from logos",
    "Emoji": "emoji: the families the emoji sources already fetch (noto, twemoji, fluent), "
             "share-alike (openmoji, emojione-v1), or one more emoji look under one style word",
}
DROP_NAME = re.compile(r"logo|brand|simple-icons|selfhst|thesvg|devicon|skill-icons|crypto")
DROP_SETS = {
    "cif": "the same rectangular country flags as `flag`",
    "flagpack": "the same rectangular country flags as `flag`",
}
STYLES = {  # sets drawn as coloured lines; every other kept set is "flat icon"
    "icon-park": "outline", "marketeq": "outline", "streamline-cyber-color": "outline",
    "streamline-freehand-color": "outline", "streamline-ultimate-color": "outline",
}
ONLY_VARIANT = {"flag": "4x3", "meteocons": "fill"}  # sets drawn twice: the variant kept
# single icons of kept sets that draw a logo, a product or a character (trademarks): left out by name
BRAND_ICON = re.compile(
    r"\b(logos?|brand|google|android|microsoft|facebook|twitter|instagram|youtube|whatsapp|amazon|paypal|"
    r"bitcoin|ethereum|nintendo|xbox|playstation|dropbox|wikipedia|linkedin|pinterest|snapchat|tiktok|reddit|"
    r"skype|slack|github|gitlab|spotify|netflix|adobe|photoshop|illustrate|indesign|lightroom|chrome|firefox|"
    r"safari|ios|ipados|linux|ubuntu|visa|mastercard|amex|telegram|discord|tumblr|dribbble|behance|figma|"
    r"sketch|steam|twitch|qq|wechat|blogger|soundcloud|foursquare|bing|blackberry|ati|pacman|mario|batman|"
    r"pokemon|predator|star wars|darth vader|windows coding|osx)\b|^apple(?! fruit)")
FLAG_CATEGORY = "Flags / Maps"


def set_verdict(prefix: str, info: dict, monochrome: bool = False) -> str | None:
    """Why a set is left out, or None when it is kept. `monochrome`: the rules of the silhouette
    source (silhouettes.py), which reads only monochrome sets and may read emoji sets (a one-colour
    glyph is not one of the emoji looks the emoji sources give, and has its own style word)."""
    spdx = info.get("license", {}).get("spdx", "")
    if not monochrome and not info.get("palette"):
        return "monochrome (palette: false)"
    if monochrome and info.get("palette"):
        return "multi-colour (palette: true)"
    if spdx not in PERMISSIVE:
        return f"licence {spdx or 'unknown'}: not permissive (NC, share-alike or GPL)"
    if DROP_NAME.search(prefix) or DROP_NAME.search(info.get("name", "").lower()):
        return "logos / brands"
    if info.get("category") in DROP_CATEGORIES and not (monochrome and info["category"] == "Emoji"):
        return DROP_CATEGORIES[info["category"]]
    if "emoji" in prefix and not monochrome:  # uncategorised (hidden) emoji sets, e.g. `fluent-emoji`
        return DROP_CATEGORIES["Emoji"]
    return DROP_SETS.get(prefix)


def icon_label(key: str, suffixes: dict | None = None) -> tuple[str, str, int]:
    """(label, variant suffix, number) of an icon key: "add-circle-flat" -> ("add circle", "flat", 0);
    numbers (sizes, "-24", even when the set lists them as suffixes) go to `number`."""
    variant = ""
    for s in sorted((s for s in (suffixes or {}) if s and not s.isdigit()), key=len, reverse=True):
        if key.endswith("-" + s):
            key, variant = key[: -len(s) - 1], s
            break
    words = [re.sub(r"^([a-z]{3,})\d+$", r"\1", w) for w in key.split("-")]  # "down2" -> "down"
    numbers = [int(w) for w in words if w.isdigit()]
    label = " ".join(w for w in words if not w.isdigit())
    return label, variant, max(numbers, default=0)


def flag_label(code: str, labels: dict[str, str]) -> str | None:
    """Emojibase label of a two-letter region code ("fr" -> "flag: France"), via regional indicators."""
    if not re.fullmatch(r"[a-z]{2}", code):
        return None
    return labels.get("-".join(f"{0x1F1E6 + ord(c) - ord('a'):X}" for c in code))


def choose_icons(prefix: str, data: dict, flags: bool, labels: dict[str, str]) -> list[tuple[str, str]]:
    """(key, label) of the icons of one set: one per (label, variant), the largest numbered key
    (sizes: the most detailed drawing), in a fixed pseudo-random order so a cap spreads over the set."""
    best: dict[tuple[str, str], tuple[int, str]] = {}
    for key, icon in data["icons"].items():
        if icon.get("hidden") or any(k in icon for k in ("rotate", "hFlip", "vFlip")):
            continue
        label, variant, number = icon_label(key, data.get("suffixes"))
        if prefix in ONLY_VARIANT and variant != ONLY_VARIANT[prefix]:
            continue
        if flags:
            label = flag_label(label.replace(" ", "-"), labels) or ""
        if len(label) < 2 or label.isdigit() or BRAND_ICON.search(label):
            continue
        if (label, variant) not in best or number > best[label, variant][0]:
            best[label, variant] = (number, key)
    chosen = [(key, label) for (label, _), (_, key) in best.items()]
    return sorted(chosen, key=lambda kl: (zlib.crc32(f"{prefix}:{kl[0]}".encode()), kl[0]))


def icon_svg(data: dict, key: str) -> str:
    """The standalone SVG of one icon of a set."""
    icon = data["icons"][key]
    left, top, w, h = (icon.get(k, data.get(k, d)) for k, d in
                       (("left", 0), ("top", 0), ("width", 16), ("height", 16)))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'width="{w}" height="{h}" viewBox="{left} {top} {w} {h}">{icon["body"]}</svg>')


def quotas(counts: dict[str, int], per_set: int, total: int) -> dict[str, int]:
    """Icons taken per set: at most `per_set` each, scaled down together to at most `total`."""
    q = {p: min(n, per_set) for p, n in counts.items()}
    s = sum(q.values())
    return {p: n * total // s for p, n in q.items()} if s > total else q


def attribution(info: dict) -> str:
    lic, author = info.get("license", {}), info.get("author", {})
    return (f"{info.get('name', '')} by {author.get('name', 'its authors')} ({author.get('url', '')}), "
            f"{lic.get('title', lic.get('spdx', ''))} ({lic.get('url', '')})")


def read_iconify(pkg: Path, labels: dict[str, str], px: int, per_set: int = 1500, total: int = 20000,
                 report: dict | None = None) -> Iterator[Item]:
    """Icons of every kept set of the package; `report` (if given) receives the kept and dropped
    sets: {"kept": {prefix: {...}}, "dropped": {prefix: reason}}."""
    report = {} if report is None else report
    kept, dropped = report.setdefault("kept", {}), report.setdefault("dropped", {})
    sets = []
    for prefix, info in sorted(json.loads((pkg / "collections.json").read_text()).items()):
        why = set_verdict(prefix, info)
        if why:
            dropped[prefix] = why
            continue
        data = json.loads((pkg / "json" / f"{prefix}.json").read_text())
        sets.append((prefix, info, data, choose_icons(prefix, data, info.get("category") == FLAG_CATEGORY, labels)))
    take = quotas({prefix: len(chosen) for prefix, _, _, chosen in sets}, per_set, total)
    for prefix, info, data, chosen in sets:
        spdx = info["license"]["spdx"]
        kept[prefix] = {"name": info.get("name", ""), "licence": spdx, "style": STYLES.get(prefix, "flat icon"),
                        "category": info.get("category", ""), "icons": len(chosen), "taken": take[prefix]}
        credit = attribution(info) if spdx in NEEDS_ATTRIBUTION else ""
        for key, label in chosen[: take[prefix]]:
            img = render_svg_string(icon_svg(data, key), px, f"{prefix}:{key}")
            if img is not None:
                yield Item(f"{prefix}:{key}", label, img, style=STYLES.get(prefix, "flat icon"),
                           licence=spdx, attribution=credit)
