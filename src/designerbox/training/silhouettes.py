"""Tinted monochrome icons ("silhouettes") from `@iconify/json`: object shapes with their names,
each filled with one named colour on white, so shape words and colour words are learned apart.

The multi-colour sets (iconify.py) draw each thing in its usual colours, and the emoji sources have
few images of most objects (10 rockets, 17 stars in full-v1). Monochrome icon sets draw thousands
of objects as solid glyphs in `currentColor`; rendered, their alpha is recoloured with one colour
of PALETTE (the names `data.main_colour` gives back), chosen so that the images of one label go
round the palette ("rocket" in red, then orange, then yellow...).

Sets: SILHOUETTE_SETS, a fixed list of monochrome sets that draw filled glyphs, each with the
variant kept (material-symbols "" = the filled Regular, ph "fill", tabler "filled", solar "bold"...);
every set still passes `iconify.set_verdict` (permissive licence, no logo/brand set) except its
palette and emoji rules: these are monochrome by design, and an emoji drawn as a one-colour glyph
is a different look under its own style word. Icons: outline-like keys, brand names
(`iconify.BRAND_ICON`, MORE_BRANDS), labels that name a colour (the tint would contradict them),
flags, keycaps, buttons and UI glyphs (UI_WORDS: arrows, alignment, text formatting...) are left out.

Selection (bounded, broad): candidates are ranked by how plainly their label names a thing,
using the words of the emojibase labels and tags as the vocabulary of concrete things (tier 0: a
label of one or two such words, "rocket", "alarm clock"; tier 1: longer labels of such words;
tier 2: the last word is one; the rest are not used). Tier-0 labels that two or more sets draw
(the two emoji glyph sets counting as one) come first (about 1,900 common things: several drawings of each, in several colours, rather than
one image each of thousands of rare labels), then the rest by tier; pseudo-randomly within, with
at most `per_label` images of one label, `per_set` of one set and `total` in all.

Captions: "star, silhouette", "a yellow star, silhouette", "a yellow star" (the colour also
without the style word, which no other source gives).
"""

from __future__ import annotations

import json
import re
import zlib
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from designerbox.training import iconify
from designerbox.training.sources import Item, namekey, render_svg_string

STYLE = "silhouette"

# name -> RGB; every value is named back as itself by data.main_colour (tests check it)
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40), "orange": (245, 130, 20), "yellow": (240, 200, 20), "green": (44, 160, 60),
    "blue": (31, 100, 220), "purple": (140, 60, 200), "pink": (240, 110, 180), "brown": (125, 75, 35),
    "black": (25, 25, 25), "grey": (128, 128, 128),
}

# prefix -> the variant kept ("" = the icon without a style suffix). Checked on @iconify/json 2.2.535:
# all draw filled glyphs in currentColor; near copies of these (fa6-solid, ion, ic...) are not listed.
SILHOUETTE_SETS: dict[str, str] = {
    "game-icons": "",                  # CC-BY-3.0, 4k solid game glyphs: creatures, tools, vehicles
    "fa7-solid": "",                   # CC-BY-4.0, Font Awesome Solid
    "material-symbols": "",            # Apache-2.0, "" = Regular (filled); rounded/sharp/outline left out
    "mdi": "",                         # Apache-2.0, Material Design Icons; "-outline" keys left out
    "ph": "fill",                      # MIT, Phosphor Fill
    "tabler": "filled",                # MIT, Tabler's filled icons
    "fluent": "filled",                # MIT, Fluent UI System Icons, Filled (the largest size)
    "icon-park-solid": "",             # Apache-2.0
    "mingcute": "fill",                # Apache-2.0
    "ri": "fill",                      # Apache-2.0, Remix Icon Fill
    "solar": "bold",                   # CC-BY-4.0
    "bxs": "",                         # MIT, BoxIcons Solid
    "famicons": "",                    # MIT, "" = Filled
    "reicon": "filled",                # MIT
    "keyline-icons": "fill",           # MIT
    "streamline-flex": "solid",        # CC-BY-4.0
    "healthicons": "",                 # MIT, "" = Filled; "-negative" (cut out of a disc) left out
    "maki": "",                        # CC0-1.0, map symbols
    "pinhead": "",                     # CC0-1.0, map symbols
    "temaki": "",                      # CC0-1.0, map symbols
    "fluent-emoji-high-contrast": "",  # MIT, emoji as one-colour glyphs (labels join emojibase)
    "emojione-monotone": "",           # CC-BY-4.0, emoji as one-colour glyphs
}
FAMILY = {"fluent-emoji-high-contrast": "emoji", "emojione-monotone": "emoji"}  # one family when counting drawers
FILL_WORDS = ("fill", "filled", "solid", "bold")  # a trailing word that names the variant in sets without suffixes
# keys with one of these words are the outline/duotone copy of an icon, not a filled one
OUTLINE_WORDS = {"outline", "outlined", "stroked", "negative", "duotone", "twotone", "remix", "broken", "linear"}
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}  # icon-park's variant numbers
MORE_BRANDS = re.compile(
    r"\b(airpods|airplay|iphone|ipad|imac|macbook|siri|alexa|docker|npm|html5|css3|wordpress|messenger|viber|vk|"
    r"weibo|zhihu|douyin|bilibili|alipay|taobao|dingtalk|tencent|baidu|yahoo|stripe|shopify|ebay|uber|lyft|airbnb|"
    r"trello|jira|notion|outlook|onedrive|sharepoint|powerpoint|onenote|kakao|line app|xiaomi|huawei|samsung|"
    r"tesla|lego|disney|marvel|mastodon|bluesky|threads|meta|openai|chatgpt|copilot|bing|python|javascript)\b")
COLOUR_WORDS = set(PALETTE) | {"white", "gray", "gold", "golden", "silver", "violet", "cyan", "magenta"}
UI_WORDS = set("""
arrow arrows chevron chevrons caret align alignment format text font sort filter list menu layout column columns
row rows border borders indent outdent cursor window app apps browser database server code terminal bracket
brackets toggle checkbox check checkmark plus minus add remove close x xmark delete edit upload download sync
refresh undo redo zoom search settings sidebar panel tab tabs dashboard table grid file files folder document
page link unlink share export import login logout exit enter input output play pause stop skip forward rewind
next previous back up down left right expand collapse maximize minimize fullscreen vertical horizontal split
merge flip rotate crop resize scan qr barcode wifi bluetooth signal rss feed cast sim usb ethernet api
keycap button buttons mark question exclamation info help warning error alert notification badge bullet
number numbers letter letters alphabet symbol sign shape chart graph diagram pie bar selection select
cancel block ban off slash disabled dots ellipsis more hamburger subscript superscript bold italic underline
strikethrough paragraph heading quote spacing width height size distribute tooltip modal dialog toolbar
""".split())


def mono_verdict(prefix: str, info: dict) -> str | None:
    """Why a set is not a silhouette source, or None. The multi-colour source's rules minus its
    palette and emoji rules: licence, logos and brands, programming icons still leave a set out."""
    if prefix not in SILHOUETTE_SETS:
        return "not a listed filled monochrome set"
    return iconify.set_verdict(prefix, info, monochrome=True)


def split_variant(key: str, suffixes: dict | None) -> tuple[str, str, int]:
    """(label, variant, number): iconify.icon_label, plus a trailing fill word as the variant
    ("star-filled" -> "filled"), a size before it ("24-filled" -> 24) and icon-park's "-one"."""
    label, variant, number = iconify.icon_label(key, suffixes)
    m = re.fullmatch(r"(\d+)-(.+)", variant)
    if m:
        number, variant = max(number, int(m.group(1))), m.group(2)
    words = label.split()
    if not variant and len(words) > 1 and words[-1] in FILL_WORDS:
        variant, words = words[-1], words[:-1]
    while len(words) > 1 and words[-1] in NUMBER_WORDS:
        number, words = max(number, NUMBER_WORDS[words[-1]]), words[:-1]
    return " ".join(words), variant, number


def vocabulary(emojibase: list[dict]) -> tuple[set[str], set[str]]:
    """(words, labels) of the emojibase entries: the words of every label and tag, and the labels."""
    words, labels = set(), set()
    for e in emojibase:
        labels.add(namekey(e["label"]))
        for t in [e["label"], *e.get("tags", [])]:
            words.update(namekey(t).split())
    return words - UI_WORDS, labels


def tier(label: str, words: set[str], labels: set[str]) -> int:
    """0: one or two words that name things ("rocket", "alarm clock") or an emoji label; 1: longer,
    all such words; 2: the last word names a thing; 3: not used."""
    w = label.split()
    if label in labels or (len(w) <= 2 and all(x in words for x in w)):
        return 0
    if all(x in words for x in w):
        return 1
    return 2 if w[-1] in words else 3


def usable(label: str) -> bool:
    w = set(label.split())
    return (len(label) >= 2 and not label.isdigit() and not w & (UI_WORDS | COLOUR_WORDS | OUTLINE_WORDS)
            and "flag" not in w and "skin" not in w and not iconify.BRAND_ICON.search(label)
            and not MORE_BRANDS.search(label) and len(w) <= 5)


def candidates(prefix: str, data: dict) -> list[tuple[str, str]]:
    """(key, label) of one set: the kept variant, one icon per label (the largest size)."""
    want = SILHOUETTE_SETS[prefix]
    best: dict[str, tuple[int, str]] = {}
    for key, icon in data["icons"].items():
        if icon.get("hidden") or any(k in icon for k in ("rotate", "hFlip", "vFlip")):
            continue
        if set(key.split("-")) & OUTLINE_WORDS - {want}:
            continue
        label, variant, number = split_variant(key, data.get("suffixes"))
        label = namekey(label)
        if variant != want or not usable(label):
            continue
        if label not in best or number > best[label][0]:
            best[label] = (number, key)
    return sorted((key, label) for label, (_, key) in best.items())


def select(sets: dict[str, list[tuple[str, str]]], words: set[str], labels: set[str], per_label: int,
           per_set: int, total: int) -> list[tuple[str, str, str]]:
    """(prefix, key, label) taken, under the three caps: first the labels of tier 0 that two or more
    sets (FAMILY: the emoji glyph sets as one) draw: the common things, several drawings each; then
    the rest by tier; pseudo-randomly within."""
    drawn_by = Counter(label for label, _ in {(label, FAMILY.get(prefix, prefix)) for prefix, chosen in sets.items()
                                              for _, label in chosen})
    ranked = sorted((((t := tier(label, words, labels)) > 0 or drawn_by[label] < 2, t,
                      zlib.crc32(f"{prefix}:{key}".encode()), prefix, key, label)
                     for prefix, chosen in sets.items() for key, label in chosen))
    n_label, n_set, out = Counter(), Counter(), []
    for _, t, _, prefix, key, label in ranked:
        if t > 2 or len(out) >= total:
            break
        if n_label[label] < per_label and n_set[prefix] < per_set:
            n_label[label] += 1
            n_set[prefix] += 1
            out.append((prefix, key, label))
    return out


def colour_of(label: str, k: int) -> str:
    """The tint of the k-th image of a label: the labels go round the palette from a hashed start."""
    names = list(PALETTE)
    return names[(zlib.crc32(label.encode()) + k) % len(names)]


def tint(img: Image.Image, colour: str) -> Image.Image:
    """The rendered glyph's shape (alpha) filled with one palette colour."""
    a = np.asarray(img.convert("RGBA"))[..., 3]
    rgba = np.empty(a.shape + (4,), np.uint8)
    rgba[..., :3], rgba[..., 3] = PALETTE[colour], a
    return Image.fromarray(rgba, "RGBA")


def captions(label: str, colour: str) -> list[str]:
    article = "an" if colour[0] in "aeiou" else "a"
    return [f"{label}, {STYLE}", f"{article} {colour} {label}, {STYLE}", f"{article} {colour} {label}"]


def read_silhouettes(pkg: Path, emojibase: list[dict], px: int, per_label: int = 16, per_set: int = 1200,
                     total: int = 8000, report: dict | None = None) -> Iterator[Item]:
    """Tinted icons of the SILHOUETTE_SETS present in the package; `report` (if given) receives
    {"kept": {prefix: {...}}, "dropped": {prefix: reason}, "tiers": {tier: n}}."""
    report = {} if report is None else report
    kept, dropped = report.setdefault("kept", {}), report.setdefault("dropped", {})
    collections = json.loads((pkg / "collections.json").read_text())
    infos, datas, sets = {}, {}, {}
    for prefix in SILHOUETTE_SETS:
        info = collections.get(prefix)
        why = "not in this version of the package" if info is None else mono_verdict(prefix, info)
        if why:
            dropped[prefix] = why
            continue
        infos[prefix] = info
        datas[prefix] = json.loads((pkg / "json" / f"{prefix}.json").read_text())
        sets[prefix] = candidates(prefix, datas[prefix])
    words, labels = vocabulary(emojibase)
    taken = select(sets, words, labels, per_label, per_set, total)
    per_set_taken = Counter(p for p, _, _ in taken)
    for prefix, info in infos.items():
        kept[prefix] = {"name": info.get("name", ""), "licence": info["license"]["spdx"], "style": STYLE,
                        "variant": SILHOUETTE_SETS[prefix] or "(plain)", "icons": len(sets[prefix]),
                        "taken": per_set_taken[prefix]}
    report["tiers"] = dict(Counter(tier(label, words, labels) for _, _, label in taken))
    seen = Counter()
    for prefix, key, label in taken:
        spdx = infos[prefix]["license"]["spdx"]
        img = render_svg_string(iconify.icon_svg(datas[prefix], key), px, f"{prefix}:{key}")
        if img is None:
            continue
        colour = colour_of(label, seen[label])
        seen[label] += 1
        yield Item(f"{prefix}:{key}", label, tint(img, colour), style=STYLE, licence=spdx,
                   attribution=iconify.attribution(infos[prefix]) if spdx in iconify.NEEDS_ATTRIBUTION else "",
                   captions=captions(label, colour), attributes={"tint": colour})
