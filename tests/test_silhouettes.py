"""The silhouette source: monochrome iconify sets, tinted with one named colour, on small real
files laid out like @iconify/json (and on the installed package's collections.json when the
builder's cache holds it)."""

import json
from pathlib import Path

import numpy as np
import pytest

from designerbox.training import data, iconify, silhouettes

GLYPH = '<path fill="currentColor" d="M2 2h4v12H2zM8 {0}h{1}v3H8z"/>'  # a bar and a block: one shape per i
EMOJIBASE = [  # labels and tags: the vocabulary of things the selection ranks by
    {"label": "rocket", "hexcode": "1F680", "tags": ["space", "launch"]},
    {"label": "glowing star", "hexcode": "1F31F", "tags": ["star", "sparkle"]},
    {"label": "bird", "hexcode": "1F426", "tags": ["animal"]},
    {"label": "automobile", "hexcode": "1F697", "tags": ["car"]},
    {"label": "red apple", "hexcode": "1F34E", "tags": ["apple", "fruit"]},
    {"label": "flag: France", "hexcode": "1F1EB-1F1F7", "tags": ["flag"]},
]


def glyph(i: int) -> dict:
    return {"body": GLYPH.format(2 + i % 10, 2 + i // 10)}


def mono_sets() -> dict:
    """prefix -> (collections.json entry, json/<prefix>.json body). The prefixes are listed in
    SILHOUETTE_SETS except `plain-mono`; licences and palettes are made up to test the rules."""
    return {
        "mdi": ({"name": "Material Design Icons", "license": {"spdx": "Apache-2.0"}, "category": "Material",
                 "palette": False},
                {"icons": {"rocket": glyph(0), "rocket-outline": glyph(1), "star": glyph(2), "bird": glyph(3),
                           "facebook": glyph(4), "format-bold": glyph(5), "apple-red": glyph(6),
                           "flag-france": glyph(7), "car": glyph(8), "gone": {**glyph(9), "hidden": True}},
                 "width": 24, "height": 24}),
        "ph": ({"name": "Phosphor", "license": {"spdx": "MIT"}, "palette": False},
               {"icons": {"rocket-fill": glyph(10), "rocket-bold": glyph(11), "rocket": glyph(12),
                          "star-fill": glyph(13)},
                "suffixes": {"": "Regular", "bold": "Bold", "fill": "Fill"}}),
        "fluent": ({"name": "Fluent UI System Icons", "license": {"spdx": "MIT"}, "palette": False},
                   {"icons": {"rocket-16-filled": glyph(14), "rocket-24-filled": glyph(15),
                              "rocket-24-regular": glyph(16), "car-20-filled": glyph(17)},
                    "suffixes": {"16-filled": "16 Filled", "24-filled": "24 Filled", "24-regular": "24 Regular",
                                 "20-filled": "20 Filled"}}),
        "game-icons": ({"name": "Game Icons", "author": {"name": "GameIcons", "url": "https://g.example"},
                        "license": {"title": "CC BY 3.0", "spdx": "CC-BY-3.0", "url": "https://cc.example"},
                        "palette": False},
                       {"icons": {"rocket": glyph(18), "bird": glyph(19), "star": glyph(20)}}),
        "fluent-emoji-high-contrast": ({"name": "Fluent Emoji High Contrast", "license": {"spdx": "MIT"},
                                        "category": "Emoji", "palette": False},
                                       {"icons": {"glowing-star": glyph(21), "rocket": glyph(22)}}),
        # left out: a share-alike licence, a multi-colour set, a brand set, a set not listed
        "tabler": ({"name": "Tabler", "license": {"spdx": "CC-BY-SA-4.0"}, "palette": False},
                   {"icons": {"star-filled": glyph(23)}}),
        "solar": ({"name": "Solar", "license": {"spdx": "CC-BY-4.0"}, "palette": True},
                  {"icons": {"star-bold": glyph(24)}}),
        "fa7-solid": ({"name": "Font Awesome Brands", "license": {"spdx": "CC-BY-4.0"}, "palette": False},
                      {"icons": {"star": glyph(25)}}),
        "plain-mono": ({"name": "Plain", "license": {"spdx": "MIT"}, "palette": False},
                       {"icons": {"star": glyph(26)}}),
    }


def write_package(root: Path, sets: dict) -> Path:
    """Add `sets` to an @iconify/json layout at root (keeping sets already written there)."""
    (root / "json").mkdir(parents=True, exist_ok=True)
    col = root / "collections.json"
    collections = json.loads(col.read_text()) if col.exists() else {}
    col.write_text(json.dumps(collections | {k: info for k, (info, _) in sets.items()}))
    for prefix, (info, body) in sets.items():
        (root / "json" / f"{prefix}.json").write_text(json.dumps({"prefix": prefix, "info": info, **body}))
    return root


def test_set_selection_honours_licences_palettes_and_brands(tmp_path):
    pkg = write_package(tmp_path / "iconify", mono_sets())
    report = {}
    items = list(silhouettes.read_silhouettes(pkg, EMOJIBASE, 32, report=report))
    assert sorted(report["kept"]) == ["fluent", "fluent-emoji-high-contrast", "game-icons", "mdi", "ph"]
    dropped = report["dropped"]
    assert "not permissive" in dropped["tabler"] and "multi-colour" in dropped["solar"]
    assert dropped["fa7-solid"] == "logos / brands"
    assert "plain-mono" not in dropped and "plain-mono" not in report["kept"]  # not listed: never read
    assert "not in this version" in dropped["maki"]
    got = sorted((i.name, i.label) for i in items)
    assert got == [("fluent-emoji-high-contrast:glowing-star", "glowing star"),
                   ("fluent-emoji-high-contrast:rocket", "rocket"),
                   ("fluent:car-20-filled", "car"), ("fluent:rocket-24-filled", "rocket"),  # largest filled size
                   ("game-icons:bird", "bird"), ("game-icons:rocket", "rocket"), ("game-icons:star", "star"),
                   ("mdi:bird", "bird"), ("mdi:car", "car"), ("mdi:rocket", "rocket"), ("mdi:star", "star"),
                   ("ph:rocket-fill", "rocket"), ("ph:star-fill", "star")]  # no outline, brand, UI, colour, flag
    assert {i.licence for i in items} == {"MIT", "Apache-2.0", "CC-BY-3.0"}
    credit = next(i for i in items if i.name == "game-icons:rocket")
    assert credit.attribution.startswith("Game Icons by GameIcons (https://g.example), CC BY 3.0")
    assert next(i for i in items if i.name == "mdi:rocket").attribution == ""
    assert {i.style for i in items} == {"silhouette"}


def test_installed_package_sets_pass_the_licence_rules():
    """Every listed set, as the installed @iconify/json 2.2.535 describes it (builder's cache)."""
    from designerbox.settings import Settings

    pkg = Settings.from_env().home / "cache" / "npm" / "@iconify__json@2.2.535" / "package"
    if not (pkg / "collections.json").exists():
        pytest.skip("@iconify/json 2.2.535 is not in the builder's cache (designerbox data build fetches it)")
    collections = json.loads((pkg / "collections.json").read_text())
    for prefix in silhouettes.SILHOUETTE_SETS:
        info = collections[prefix]
        assert silhouettes.mono_verdict(prefix, info) is None, prefix
        assert info["license"]["spdx"] in iconify.PERMISSIVE and not info.get("palette"), prefix
        assert info.get("category") not in ("Logos", "Brand / Social", "Programming"), prefix
    for prefix, info in collections.items():  # what the rules say of every other set
        why = silhouettes.mono_verdict(prefix, info)
        assert (why is None) == (prefix in silhouettes.SILHOUETTE_SETS)


def test_caps_bound_the_selection_and_common_things_come_first():
    sets = {f"set{i}": [(f"k{j}", f"thing {j}") for j in range(30)] for i in range(6)}
    sets["set0"] += [("rocket", "rocket"), ("odd", "odd gizmo")]  # drawn by one set; no word names a thing
    words, labels = silhouettes.vocabulary(EMOJIBASE + [{"label": "thing", "hexcode": "0", "tags": [
        str(j) for j in range(30)]}])
    taken = silhouettes.select(sets, words, labels, per_label=4, per_set=25, total=100)
    labels_taken = [label for _, _, label in taken]
    assert len(taken) == 100 and len(set(labels_taken)) == 30
    assert max(labels_taken.count(x) for x in set(labels_taken)) == 4  # per label
    per_set = silhouettes.select(sets, words, labels, per_label=6, per_set=10, total=10**6)
    assert [sum(p == s for p, _, _ in per_set) for s in sets] == [10] * 6
    assert "rocket" not in labels_taken  # the things several sets draw come first
    again = silhouettes.select(sets, words, labels, per_label=4, per_set=25, total=100)
    assert again == taken  # a fixed order, no randomness
    everything = [label for _, _, label in silhouettes.select(sets, words, labels, 4, 100, 10**6)]
    assert len(everything) == 30 * 4 + 1 and "rocket" in everything and "odd gizmo" not in everything
    assert [silhouettes.colour_of("rocket", k) for k in range(10)].count("red") == 1  # round the palette


@pytest.mark.parametrize("colour", list(silhouettes.PALETTE))
def test_tinted_icon_is_the_named_colour_on_white(colour):
    from designerbox.training.sources import render_svg_string

    svg = iconify.icon_svg({"icons": {"star": {"body": '<path fill="currentColor" d="M8 1l2 5h5l-4 3 2 6-5-4-5 '
                                                         '4 2-6-4-3h5z"/>'}}}, "star")
    drawn = render_svg_string(svg, 128)
    img = silhouettes.tint(drawn, colour)
    assert np.array_equal(np.asarray(img)[..., 3], np.asarray(drawn.convert("RGBA"))[..., 3])  # the same shape
    rgba = data.to_square(img, 64, margin=0.04)
    assert data.main_colour(rgba) == colour and data.main_colours(rgba) == [colour]
    rgb = data.on_white(rgba)
    assert tuple(rgb[0, 0]) == tuple(rgb[-1, -1]) == (255, 255, 255)
    assert tuple(rgb[32, 32]) == silhouettes.PALETTE[colour]  # the middle of the star: the pure tint


def test_captions_carry_the_colour_and_style_words(tmp_path):
    pkg = write_package(tmp_path / "iconify", mono_sets())
    items = list(silhouettes.read_silhouettes(pkg, EMOJIBASE, 32))
    for item in items:
        colour = item.attributes["tint"]
        a = "an" if colour == "orange" else "a"
        assert item.captions == [f"{item.label}, silhouette", f"{a} {colour} {item.label}, silhouette",
                                 f"{a} {colour} {item.label}"]
        assert data.main_colour(np.asarray(item.image.convert("RGBA"))) == colour
    rockets = [i.attributes["tint"] for i in items if i.label == "rocket"]
    assert len(rockets) == 5 and len(set(rockets)) == 5  # one label: different colours
    assert silhouettes.captions("egg", "orange") == ["egg, silhouette", "an orange egg, silhouette", "an orange egg"]


def test_build_keeps_heldout_concepts_out_across_sources(tmp_path):
    """`bird` is a held-out concept (by its hash): its multi-colour icon and its silhouettes are all
    held out; the build records the silhouette sets, captions and tints."""
    assert data.split_of("bird") == "heldout" and data.split_of("rocket") == "train"
    cache = tmp_path / "cache"
    labels_pkg = cache / "npm" / "emojibase-data@17.0.0" / "package"
    (labels_pkg / "en").mkdir(parents=True)
    (labels_pkg / "en" / "data.json").write_text(json.dumps(EMOJIBASE))
    pkg = cache / "npm" / "@iconify__json@2.2.535" / "package"
    colour_set = {"good": ({"name": "Good", "license": {"spdx": "MIT"}, "category": "UI Multicolor", "palette": True},
                           {"icons": {"bird": {"body": '<path fill="#e03030" d="M2 2h12v12H2z"/>'},
                                      "rocket": {"body": '<path fill="#3050e0" d="M4 2h8v12H4z"/>'}}})}
    write_package(pkg, colour_set | mono_sets())
    stats = data.build(tmp_path / "ds", cache, sources=("iconify", "silhouettes"), size=32, log=lambda s: None)
    _, meta = data.load(tmp_path / "ds")
    birds = [m for m in meta if data.namekey(m["label"]) == "bird"]
    assert {m["source"] for m in birds} == {"iconify", "silhouettes"} and {m["split"] for m in birds} == {"heldout"}
    assert {m["split"] for m in meta if m["label"] == "rocket"} == {"train"}
    sil = [m for m in meta if m["source"] == "silhouettes"]
    assert stats["per_style"]["silhouette"] == len(sil) == 13
    assert all(m["colour"] == m["attributes"]["tint"] and m["captions"][1].endswith(", silhouette") and
               m["attributes"]["tint"] in m["captions"][2] for m in sil)
    assert all(m["package"] == "npm:@iconify/json@2.2.535" for m in sil)
    assert sorted(stats["silhouette_sets"]["kept"]) == ["fluent", "fluent-emoji-high-contrast", "game-icons", "mdi",
                                                        "ph"]
    assert "good" in stats["iconify_sets"]["kept"] and "mdi" not in stats["iconify_sets"]["kept"]
    # the same split again from the rows alone (what a later reader of meta.jsonl recomputes)
    rows = [{"label": m["label"], "style": m["style"]} for m in meta]
    data.assign_splits(rows)
    assert [r["split"] for r in rows] == [m["split"] for m in meta]


def test_silhouettes_leave_the_heldout_pairs_as_they_were():
    """A concept drawn in 2 styles plus silhouettes gets no held-out pair; one whose pair would
    change with the silhouette style keeps the pair it had without it."""
    styles = ["3d", "emoji", "flat emoji", "flat icon", "clip art"]
    label = next(f"thing {i}" for i in range(5000) if data.heldout_pair_style(f"thing {i}", styles[:2] + ["silhouette"]))
    meta = [{"label": label, "style": s} for s in styles[:2] + ["silhouette"]]
    assert data.assign_splits(meta) == [] and {m["split"] for m in meta} == {data.split_of(label)}
    moved = next(f"thing {i}" for i in range(5000) if data.heldout_pair_style(f"thing {i}", styles) and
                 data.heldout_pair_style(f"thing {i}", styles + ["silhouette"]) == "silhouette")
    before = [{"label": moved, "style": s} for s in styles]
    after = [dict(m) for m in before] + [{"label": moved, "style": "silhouette"}]
    assert data.assign_splits(before) == data.assign_splits(after) == [(moved, data.heldout_pair_style(moved, styles))]
    assert after[-1]["split"] == "train"
