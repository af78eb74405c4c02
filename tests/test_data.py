"""The dataset builder's parts on small real files laid out like the source packages."""

import json

import numpy as np
import pytest
from PIL import Image

from designerbox.training import avatars, data, iconify, sources


def rgba(colour, size=32, coverage=0.5) -> Image.Image:
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    side = int(size * coverage ** 0.5)
    img.paste(Image.new("RGBA", (side, side), colour), ((size - side) // 2, (size - side) // 2))
    return img


@pytest.mark.parametrize("colour, name", [
    ((220, 30, 30, 255), "red"), ((250, 200, 20, 255), "yellow"), ((30, 160, 60, 255), "green"),
    ((30, 90, 220, 255), "blue"), ((120, 60, 20, 255), "brown"), ((20, 20, 20, 255), "black"),
    ((245, 245, 245, 255), "white"), ((128, 128, 128, 255), "grey"), ((240, 120, 200, 255), "pink"),
])
def test_main_colour_names(colour, name):
    assert data.main_colour(np.asarray(rgba(colour))) == name


def test_captions_name_thing_style_and_colour():
    assert data.captions_for("red apple", "3d", "red") == ["red apple, 3d", "a red apple, 3d", "red apple"]
    assert data.captions_for("orange", "emoji", "orange")[1] == "an orange, emoji"
    assert data.captions_for("cat face", "flat icon", "yellow")[1] == "a yellow cat face, flat icon"


def test_to_square_keeps_aspect_and_centres():
    tall = Image.new("RGBA", (10, 40), (255, 0, 0, 255))
    sq = data.to_square(tall, 64)
    assert sq.shape == (64, 64, 4)
    cols = np.where(sq[..., 3].max(axis=0) > 0)[0]
    assert 14 <= cols.min() and cols.max() <= 49 and sq[..., 3].max(axis=1).min() > 0
    white = data.on_white(sq)
    assert tuple(white[0, 0]) == (255, 255, 255) and tuple(white[32, 32]) == (255, 0, 0)


def test_split_is_fixed_by_label():
    labels = [f"thing {i}" for i in range(2000)]
    held = [label for label in labels if data.split_of(label) == "heldout"]
    assert 10 < len(held) < 80
    assert held == [label for label in labels if data.split_of(label) == "heldout"]


def test_emoji_datasource_reader_joins_emojibase_labels(tmp_path):
    labels_pkg = tmp_path / "emojibase"
    (labels_pkg / "en").mkdir(parents=True)
    (labels_pkg / "en" / "data.json").write_text(json.dumps([
        {"label": "red apple", "hexcode": "1F34E"}, {"label": "keycap: 3", "hexcode": "0033-FE0F-20E3"}]))
    labels = sources.emoji_labels(labels_pkg)
    assert labels == {"1F34E": "red apple", "0033-20E3": "keycap: 3"}
    pkg = tmp_path / "emoji-datasource-google"
    (pkg / "img" / "google" / "64").mkdir(parents=True)
    rgba((220, 30, 30, 255), 64).save(pkg / "img" / "google" / "64" / "1f34e.png")
    (pkg / "emoji.json").write_text(json.dumps([
        {"unified": "1F34E", "image": "1f34e.png"}, {"unified": "1F600", "image": "1f600.png"}]))
    items = list(sources.read_emoji_datasource(pkg, labels, "google"))
    assert [(item.name, item.label) for item in items] == [("1f34e.png", "red apple")]


def test_openclipart_titles_are_cleaned(tmp_path):
    folder = tmp_path / "usr/share/openclipart/svg/food"
    folder.mkdir(parents=True)
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/" width="20" '
           'height="20"><metadata><dc:title>{}</dc:title></metadata><circle cx="10" cy="10" r="9" fill="red"/></svg>')
    (folder / "apple_01.svg").write_text(svg.format("Red Apple 01"))
    (folder / "pear_02.svg").write_text(svg.format("part of the flat icon collection wed aug 25 2004"))
    items = sorted((item.label, item.image.size) for item in sources.read_openclipart(tmp_path, 32))
    assert [label for label, _ in items] == ["pear", "red apple"]


def test_write_is_atomic_and_loads_back(tmp_path):
    images = np.full((3, 8, 8, 3), 255, np.uint8)
    meta = [{"source": "noto", "style": "emoji", "split": "train", "licence": "Apache-2.0", "captions": ["x"]}] * 3
    stats = data.write(tmp_path / "ds", images, meta)
    assert stats["images"] == 3 and stats["per_source"] == {"noto": 3}
    stats = data.write(tmp_path / "ds", images[:2], meta[:2])  # replacing an existing dataset
    loaded, loaded_meta = data.load(tmp_path / "ds")
    assert loaded.shape == (2, 8, 8, 3) and len(loaded_meta) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_unknown_source_lists_valid(tmp_path):
    with pytest.raises(ValueError, match="valid: .*fluent3d"):
        data.build(tmp_path / "out", tmp_path / "cache", sources=("openmoji",))


# ---------------------------------------------------------------------------------------------
# colours of two, near duplicates, held-out pairs


def test_main_colours_name_a_second_colour_only_when_substantial():
    img = np.zeros((32, 32, 4), np.uint8)
    img[:, :16], img[:, 16:] = (220, 30, 30, 255), (30, 90, 220, 255)
    assert data.main_colours(img) == ["red", "blue"]
    img[:, 16:] = (250, 250, 250, 255)
    assert data.main_colours(img) == ["red", "white"]
    img[:, 28:] = (30, 90, 220, 255)  # 12% blue beside red and white: not named
    assert data.main_colours(img)[0] == "red" and "blue" not in data.main_colours(img)
    assert data.main_colours(np.asarray(rgba((220, 30, 30, 255)))) == ["red"]
    assert data.main_colours(img)[0] == data.main_colour(img)


def test_captions_with_two_colours():
    assert data.captions_for("candy cane", "clip art", ["red", "white"]) == [
        "candy cane, clip art", "a red and white candy cane, clip art", "candy cane"]
    assert data.captions_for("red apple", "3d", ["red", "green"])[1] == "a red apple, 3d"
    assert data.captions_for("egg", "emoji", ["orange", "white"])[1] == "an orange and white egg, emoji"


def test_near_duplicates_keep_the_first_and_drop_close_copies():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    copy = np.clip(base[1].astype(int) + rng.integers(-2, 3, base[1].shape), 0, 255).astype(np.uint8)
    recoloured = base[2].copy()
    recoloured[..., 0] = 255 - recoloured[..., 0]
    images = [*base, copy, recoloured, base[3]]
    thumbs = np.stack([data.thumbnail(im) for im in images])
    assert thumbs.shape == (7, 16 * 16 * 3)
    dup_of = data.near_duplicates(thumbs, chunk=3)  # chunks smaller than N: pairs across chunk borders
    assert dup_of.tolist() == [-1, -1, -1, -1, 1, -1, 3]


def test_heldout_pairs_are_fixed_and_leave_other_styles_in_training():
    styles = ["3d", "emoji", "flat emoji", "flat icon"]
    picked = {f"thing {i}": data.heldout_pair_style(f"thing {i}", styles) for i in range(3000)}
    held = {k: v for k, v in picked.items() if v}
    assert 30 < len(held) < 100 and set(held.values()) <= set(styles)
    assert all(data.heldout_pair_style(k, list(reversed(styles))) == v for k, v in held.items())
    assert all(data.heldout_pair_style(k, styles[:2]) is None for k in held)  # fewer than 3 styles
    label = next(iter(held))
    meta = [{"label": label, "style": s} for s in styles] + [{"label": "only once", "style": "3d"}]
    pairs = data.assign_splits(meta)
    assert pairs == [(label, held[label])]
    assert [m["split"] for m in meta] == ["heldout-pair" if s == held[label] else "train" for s in styles] + [
        data.split_of("only once")]


# ---------------------------------------------------------------------------------------------
# iconify and avatars


SQUARE = '<path fill="{}" d="M2 2h12v12H2z"/><path fill="#fff" d="M5 5h6v6H5z"/>'


def iconify_package(root, labels_pkg=None):
    """A tiny @iconify/json: collections.json and json/<prefix>.json for a few sets."""
    sets = {
        "good": ({"name": "Good", "license": {"title": "MIT", "spdx": "MIT"}, "category": "UI Multicolor",
                  "palette": True},
                 {"icons": {"gift-16": {"body": SQUARE.format("#e03030")}, "gift-24": {"body": SQUARE.format("#e03030")},
                            "paw-print": {"body": SQUARE.format("#3050e0"), "width": 20},
                            "facebook-logo": {"body": SQUARE.format("#3050e0")}, "gone": {"body": "x", "hidden": True}},
                  "width": 16, "height": 16, "suffixes": {"16": "16", "24": "24"}}),
        "credit": ({"name": "Credit", "author": {"name": "Ann", "url": "https://a.example"},
                    "license": {"title": "CC BY 4.0", "spdx": "CC-BY-4.0", "url": "https://cc.example"},
                    "category": "UI Multicolor", "palette": True},
                   {"icons": {"tree": {"body": SQUARE.format("#30a040")}, "tree-flat": {"body": SQUARE.format("#208030")},
                              "present": {"body": SQUARE.format("#e13131")}},  # a near copy of good:gift-24
                    "suffixes": {"": "Duo", "flat": "Flat"}}),
        "flags": ({"name": "Flags", "license": {"spdx": "MIT"}, "category": "Flags / Maps", "palette": True},
                  {"icons": {"fr": {"body": SQUARE.format("#2040c0")}, "es-ct": {"body": SQUARE.format("#c02020")}}}),
        "gpl-set": ({"name": "G", "license": {"spdx": "GPL-3.0"}, "palette": True}, {"icons": {}}),
        "nc-set": ({"name": "N", "license": {"spdx": "CC-BY-NC-4.0"}, "palette": True}, {"icons": {}}),
        "mono": ({"name": "M", "license": {"spdx": "MIT"}, "palette": False}, {"icons": {}}),
        "logos": ({"name": "SVG Logos", "license": {"spdx": "CC0-1.0"}, "category": "Logos", "palette": True}, {"icons": {}}),
        "brandish": ({"name": "Brand Icons", "license": {"spdx": "MIT"}, "palette": True}, {"icons": {}}),
        "fluent-emoji": ({"name": "Fluent Emoji", "license": {"spdx": "MIT"}, "palette": True}, {"icons": {}}),
    }
    (root / "json").mkdir(parents=True)
    (root / "collections.json").write_text(json.dumps({k: info for k, (info, _) in sets.items()}))
    for prefix, (info, body) in sets.items():
        (root / "json" / f"{prefix}.json").write_text(json.dumps({"prefix": prefix, "info": info, **body}))
    return root


def test_iconify_keeps_permissive_colour_sets_and_labels_icons(tmp_path):
    pkg = iconify_package(tmp_path / "iconify")
    report = {}
    items = list(iconify.read_iconify(pkg, {"1F1EB-1F1F7": "flag: France"}, 32, report=report))
    assert sorted(report["kept"]) == ["credit", "flags", "good"]
    assert set(report["dropped"]) == {"gpl-set", "nc-set", "mono", "logos", "brandish", "fluent-emoji"}
    assert "GPL" in report["dropped"]["gpl-set"] and "monochrome" in report["dropped"]["mono"]
    got = sorted((i.name, i.label, i.licence, i.style) for i in items)
    assert got == [("credit:present", "present", "CC-BY-4.0", "flat icon"),
                   ("credit:tree", "tree", "CC-BY-4.0", "flat icon"), ("credit:tree-flat", "tree", "CC-BY-4.0", "flat icon"),
                   ("flags:fr", "flag: France", "MIT", "flat icon"),
                   ("good:gift-24", "gift", "MIT", "flat icon"), ("good:paw-print", "paw print", "MIT", "flat icon")]
    credit = next(i for i in items if i.name == "credit:tree")
    assert credit.attribution.startswith("Credit by Ann (https://a.example), CC BY 4.0")
    assert next(i for i in items if i.name == "good:gift-24").attribution == ""
    paw = next(i for i in items if i.name == "good:paw-print").image
    assert paw.size == (32, 26)  # width 20 of height 16, rendered 32 wide
    assert iconify.quotas({"a": 3000, "b": 500}, 1500, 1000) == {"a": 750, "b": 250}


def test_avatar_captions_come_from_attributes():
    a = {"top": "STRAIGHT_1", "hair_color": "RED", "hat_color": "RED", "expression": "smiling", "eyes": "DEFAULT",
         "mouth": "SMILE", "eyebrows": "DEFAULT", "nose": "DEFAULT", "skin_color": "LIGHT", "facial_hair": "NONE",
         "facial_hair_color": "RED", "accessory": "ROUND", "clothing": "HOODIE", "clothing_color": "BLUE_02",
         "shirt_graphic": "NONE"}
    assert avatars.captions(a) == [
        "smiling person with long straight red hair, round glasses, blue hoodie, avatar",
        "avatar of a smiling person with light skin, long straight red hair, round glasses, wearing a blue hoodie",
        "smiling person with long straight red hair, round glasses, blue hoodie"]
    bald = a | {"top": "NONE", "facial_hair": "BEARD_MEDIUM", "accessory": "NONE", "expression": "angry",
                "clothing": "GRAPHIC_SHIRT", "clothing_color": "RED", "shirt_graphic": "SKULL"}
    assert avatars.captions(bald)[0] == "angry bald person with a beard, red t-shirt, avatar"
    assert avatars.captions(bald)[1].endswith("wearing a red t-shirt with a skull")
    hat = a | {"top": "WINTER_HAT_1", "hat_color": "PINK", "accessory": "NONE", "clothing": "OVERALL"}
    assert avatars.describe(hat)[0] == "smiling person in a pink winter hat, blue overalls"
    mohawk = a | {"top": "MOHAWK", "accessory": "NONE"}
    assert avatars.describe(mohawk)[0] == "smiling person with a red mohawk, blue hoodie"


def test_avatars_are_fixed_by_the_seed():
    first = list(avatars.read_avatars(3, 48, seed=7))
    again = list(avatars.read_avatars(3, 48, seed=7))
    assert [i.attributes for i in first] == [i.attributes for i in again]
    assert [i.label for i in first] == [avatars.describe(i.attributes)[0] for i in first]
    assert np.array_equal(np.asarray(first[0].image), np.asarray(again[0].image))
    assert first[0].image.width == 48 and first[0].captions[0].endswith(", avatar")
    other = [i.attributes for i in avatars.read_avatars(3, 48, seed=8)]
    assert other != [i.attributes for i in first]


def test_build_from_cached_packages_records_licences_and_duplicates(tmp_path):
    """The whole build on packages already in the cache (no registry call): iconify + avatars."""
    cache = tmp_path / "cache"
    labels_pkg = cache / "npm" / "emojibase-data@17.0.0" / "package"
    (labels_pkg / "en").mkdir(parents=True)
    (labels_pkg / "en" / "data.json").write_text(json.dumps([{"label": "flag: France", "hexcode": "1F1EB-1F1F7"}]))
    iconify_package(cache / "npm" / "@iconify__json@2.2.535" / "package")
    stats = data.build(tmp_path / "ds", cache, sources=("iconify", "avatars"), size=32, n_avatars=4, log=lambda s: None)
    images, meta = data.load(tmp_path / "ds")
    assert images.shape[1:] == (32, 32, 3) and len(meta) == stats["images"]
    assert stats["per_source"]["avatars"] == 4 and stats["per_source_style"]["avatars"] == {"avatar": 4}
    assert stats["dropped"]["iconify"] == {"near": 1}  # good:gift-24, one shade off credit:present (read first)
    assert stats["near_duplicate_examples"] == [["iconify:good:gift-24", "iconify:credit:present"]]
    assert {m["file"] for m in meta if m["source"] == "iconify"} == {
        "credit:present", "credit:tree", "credit:tree-flat", "flags:fr", "good:paw-print"}
    assert {m["licence"] for m in meta if m["source"] == "iconify"} == {"MIT", "CC-BY-4.0"}
    assert all(m["package"] == "pypi:python-avatars@1.4.1" and m["attributes"] for m in meta if m["source"] == "avatars")
    assert all(m["split"] in ("train", "heldout", "heldout-pair") and len(m["captions"]) == 3 for m in meta)
    assert "gpl-set" in stats["iconify_sets"]["dropped"]
    assert "near dup" in data.summary(stats)
