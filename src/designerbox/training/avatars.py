"""Avatars drawn by `python-avatars` (PyPI, MIT; the Avataaars parts), captioned from their attributes.

Every attribute of an avatar is drawn explicitly from a seeded generator (the library's own
random choice is never used), so a seed gives the same set everywhere. Only parts the caption can
name are used: parts tied to a film or a person (Jedi robe, John Wick suit, astronaut helmet...),
shirt texts, and tops whose colour the library cannot set are left out.

    label      "smiling person with long red hair, glasses, blue hoodie"
    captions   [label + ", avatar",
                "avatar of a smiling person with light skin, long red hair, glasses, wearing a blue hoodie",
                label]
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Iterator

import numpy as np

from designerbox.training.sources import Item, render_svg_string

# attribute tables: library member name -> words (python-avatars 1.4.1)
HAIR = {  # (adjectives, noun): the hair colour goes between them
    "BIG_HAIR": ("big", "hair"), "BOB": ("", "bob cut"), "BUN": ("", "hair in a bun"),
    "CAESAR": ("short", "hair"), "CAESAR_SIDE_PART": ("short side-parted", "hair"), "CURLY": ("curly", "hair"),
    "CURVY": ("long wavy", "hair"), "DREADS": ("long", "dreadlocks"), "FRIDA": ("", "hair with flowers"),
    "FRIZZLE": ("short", "hair"), "FRO": ("", "afro"), "FRO_BAND": ("", "afro with a headband"),
    "LONG_NOT_TOO_LONG": ("shoulder-length", "hair"), "MIA_WALLACE": ("", "bob with bangs"),
    "SHAGGY": ("shaggy", "hair"), "SHAGGY_MULLET": ("", "mullet"), "SHORT_CURLY": ("short curly", "hair"),
    "SHORT_DREADS_1": ("short", "dreadlocks"), "SHORT_DREADS_2": ("short twisted", "hair"),
    "SHORT_FLAT": ("short", "hair"), "SHORT_ROUND": ("short", "hair"), "SHORT_WAVED": ("short wavy", "hair"),
    "STRAIGHT_1": ("long straight", "hair"), "STRAIGHT_STRAND": ("long straight", "hair"),
    "BRAIDS": ("", "braids"), "BUZZCUT": ("", "buzz cut"), "CORNROWS": ("", "cornrows"),
    "CURLY_2": ("long curly", "hair"), "DREADLOCKS": ("", "dreadlocks"), "EINSTEIN_HAIR": ("wild", "hair"),
    "ELVIS": ("", "quiff"), "EVIL_SPIKE": ("spiky", "hair"), "HALF_SHAVED": ("half-shaved", "hair"),
    "LONG_HAIR_CURLY": ("long curly", "hair"), "LOOSE_HAIR": ("long wavy", "hair"), "MOHAWK": ("", "mohawk"),
    "MOWGLI": ("messy", "hair"), "PIXIE": ("", "pixie cut"), "POMPADOUR": ("", "pompadour"),
    "QUIFF": ("", "quiff"), "TWIST_LONG_HAIR": ("long twisted", "hair"), "TWIST_LONG_HAIR_2": ("long twisted", "hair"),
    "WICK": ("shoulder-length", "hair"), "WILD": ("wild", "hair"), "NONE": ("bald", ""),
}
HATS = {"HAT": "hat", "HIJAB": "hijab", "TURBAN": "turban", "WINTER_HAT_1": "winter hat",
        "WINTER_HAT_2": "winter hat", "WINTER_HAT_3": "winter hat", "WINTER_HAT_4": "winter hat",
        "CHEF_CAP": "white chef's hat"}  # the chef's hat has no colour slot
NO_FACIAL_HAIR = {"CURLY_2", "LONG_HAIR_CURLY", "LOOSE_HAIR", "HIJAB"}  # tops without a facial-hair slot
NO_ACCESSORY = {"LONG_HAIR_CURLY"}
HAIR_COLOURS = {"AUBURN": "auburn", "BLACK": "black", "BLONDE": "blonde", "BLONDE_GOLDEN": "golden blonde",
                "BROWN": "brown", "BROWN_DARK": "dark brown", "PASTEL_PINK": "pink",
                "PLATINUM": "platinum blonde", "RED": "red", "SILVER_GRAY": "grey"}
SKIN = {"PALE": "pale", "LIGHT": "light", "TANNED": "tan", "YELLOW": "yellow", "BROWN": "brown",
        "DARK_BROWN": "dark brown", "BLACK": "dark"}
FABRIC_COLOURS = {"BLACK": "black", "BLUE_01": "light blue", "BLUE_02": "blue", "BLUE_03": "dark blue",
                  "GRAY_01": "light grey", "GRAY_02": "grey", "HEATHER": "dark grey", "PASTEL_BLUE": "pale blue",
                  "PASTEL_GREEN": "mint green", "PASTEL_ORANGE": "peach", "PASTEL_YELLOW": "pale yellow",
                  "PINK": "pink", "RED": "red", "WHITE": "white"}
CLOTHING = {  # "{c}" is the fabric colour; the article is dropped in the label
    "BLAZER_SHIRT": "a blazer over a {c} shirt", "BLAZER_SWEATER": "a blazer over a {c} sweater",
    "COLLAR_SWEATER": "a {c} sweater", "GRAPHIC_SHIRT": "a {c} t-shirt", "HOODIE": "a {c} hoodie",
    "OVERALL": "{c} overalls", "SHIRT_CREW_NECK": "a {c} t-shirt", "SHIRT_SCOOP_NECK": "a {c} scoop-neck t-shirt",
    "SHIRT_V_NECK": "a {c} v-neck t-shirt", "CHEF": "a {c} chef's jacket",
}
GRAPHICS = {"BAT": "bat", "BEAR": "bear", "DEER": "deer", "DIAMOND": "diamond", "PIZZA": "pizza slice",
            "SKULL": "skull", "SKULL_OUTLINE": "skull"}
ACCESSORIES = {"NONE": "", "KURT": "white sunglasses", "PRESCRIPTION_1": "glasses", "PRESCRIPTION_2": "glasses",
               "ROUND": "round glasses", "SUNGLASSES": "sunglasses", "SUNGLASSES_2": "sunglasses",
               "WAYFARERS": "sunglasses", "WAYFARERS_2": "sunglasses", "EYEPATCH": "an eyepatch"}
FACIAL_HAIR = {"NONE": "", "BEARD_LIGHT": "stubble", "BEARD_MEDIUM": "a beard", "BEARD_MAGESTIC": "a long beard",
               "WICK_BEARD": "a beard", "MOUSTACHE_FANCY": "a moustache", "MOUSTACHE_MAGNUM": "a moustache",
               "EINSTEIN_MOUSTACHE": "a moustache"}
EXPRESSIONS = {  # word -> (eyes, mouth, eyebrows; "_NATURAL" eyebrows are drawn at random)
    "smiling": ("DEFAULT", "SMILE", "DEFAULT"), "laughing": ("HAPPY", "BIG_SMILE", "RAISED_EXCITED"),
    "sad": ("DEFAULT", "SAD", "SAD_CONCERNED"), "crying": ("CRY", "SAD", "SAD_CONCERNED"),
    "angry": ("SQUINT", "SERIOUS", "ANGRY"), "surprised": ("SURPRISED", "DISBELIEF", "RAISED_EXCITED"),
    "screaming": ("SQUINT", "SCREAM_OPEN", "RAISED_EXCITED"), "winking": ("WINK", "SMILE", "DEFAULT"),
    "love-struck": ("HEART", "SMILE", "DEFAULT"), "serious": ("DEFAULT", "SERIOUS", "DEFAULT"),
    "worried": ("SQUINT", "CONCERNED", "SAD_CONCERNED"), "playful": ("WINK_WACKY", "TONGUE", "RAISED_EXCITED"),
    "dizzy": ("X_DIZZY", "DISBELIEF", "DEFAULT"), "eye-rolling": ("EYE_ROLL", "SERIOUS", "DEFAULT"),
    "grimacing": ("SQUINT", "GRIMACE", "UP_DOWN"), "sleepy": ("CLOSED", "SERIOUS", "DEFAULT"),
}
NOSES = ("DEFAULT", "SMALL", "WIDE")


def _pick(rng: np.random.Generator, options, none_share: float = 0.0) -> str:
    """One key of `options`; "NONE" with probability `none_share`, else uniform over the others."""
    keys = [k for k in options if k != "NONE"]
    if none_share and rng.random() < none_share:
        return "NONE"
    return keys[int(rng.integers(len(keys)))]


def random_attributes(rng: np.random.Generator) -> dict[str, str]:
    """Every attribute of one avatar, as python-avatars member names."""
    top = _pick(rng, HATS) if rng.random() < 0.15 else _pick(rng, HAIR, none_share=0.05)
    eyes, mouth, brows = EXPRESSIONS[expression := _pick(rng, EXPRESSIONS)]
    brows = brows + "_NATURAL" if rng.random() < 0.5 else brows
    hair_colour = _pick(rng, HAIR_COLOURS)
    facial_hair = "NONE" if top in NO_FACIAL_HAIR else _pick(rng, FACIAL_HAIR, none_share=0.7)
    return {
        "top": top, "hair_color": hair_colour, "hat_color": _pick(rng, FABRIC_COLOURS),
        "expression": expression, "eyes": eyes, "mouth": mouth, "eyebrows": brows,
        "nose": _pick(rng, NOSES), "skin_color": _pick(rng, SKIN),
        "facial_hair": facial_hair, "facial_hair_color": hair_colour,
        "accessory": "NONE" if top in NO_ACCESSORY else _pick(rng, ACCESSORIES, none_share=0.6),
        "clothing": (clothing := _pick(rng, CLOTHING)), "clothing_color": _pick(rng, FABRIC_COLOURS),
        "shirt_graphic": _pick(rng, GRAPHICS) if clothing == "GRAPHIC_SHIRT" else "NONE",
    }


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def describe(a: dict[str, str]) -> tuple[str, str]:
    """(label, full description) of an avatar from its attributes."""
    extras = [w for w in (FACIAL_HAIR[a["facial_hair"]], ACCESSORIES[a["accessory"]]) if w]
    clothing = CLOTHING[a["clothing"]].format(c=FABRIC_COLOURS[a["clothing_color"]])
    graphic = f" with a {GRAPHICS[a['shirt_graphic']]}" if a["shirt_graphic"] != "NONE" else ""
    expr = a["expression"]
    if a["top"] in HATS or a["top"] == "NONE":
        colour = "" if a["top"] in ("CHEF_CAP", "NONE") else FABRIC_COLOURS[a["hat_color"]] + " "
        top = "bald" if a["top"] == "NONE" else f"in a {colour}{HATS[a['top']]}"
        head = f"{expr} bald person" if a["top"] == "NONE" else f"{expr} person {top}"
        if extras:  # "bald person with a beard, glasses", not "bald person, a beard, glasses"
            head += f" with {extras[0]}"
        parts = [head, *extras[1:]]
    else:
        adj, noun = HAIR[a["top"]]
        top = " ".join(w for w in (adj, HAIR_COLOURS[a["hair_color"]], noun) if w)
        if not noun.startswith(("hair", "dreadlocks", "braids", "cornrows")):  # a haircut: "a red mohawk"
            top = f"{_article(top)} {top}"
        parts = [f"{expr} person with {top}", *extras]
    label = ", ".join([*parts, clothing.removeprefix("a ")])
    full = ", ".join([f"avatar of {_article(expr)} {expr} person with {SKIN[a['skin_color']]} skin", top,
                      *extras, f"wearing {clothing}{graphic}"])
    return label, full


def captions(a: dict[str, str]) -> list[str]:
    label, full = describe(a)
    return [f"{label}, avatar", full, label]


def check_installed(package: str, pinned: str) -> None:
    """The avatars come from the installed PyPI package: fail early unless it is the pinned release."""
    try:
        found = version(package)
    except PackageNotFoundError:
        raise RuntimeError(f"{package}=={pinned} is not installed: pip install '{package}=={pinned}' "
                           "(it is in the `train` extra)") from None
    if found != pinned:
        raise RuntimeError(f"{package} {found} is installed, the dataset pins {pinned}: pip install '{package}=={pinned}'")


def render_avatar(a: dict[str, str], px: int):
    """The avatar of attributes `a` as a PIL image `px` wide (transparent background)."""
    import python_avatars as pa

    avatar = pa.Avatar(
        style=pa.AvatarStyle.TRANSPARENT, background_color=pa.BackgroundColor.DEFAULT,
        top=pa.HatType[a["top"]] if a["top"] in HATS else pa.HairType[a["top"]],
        hat_color=pa.ClothingColor[a["hat_color"]], eyebrows=pa.EyebrowType[a["eyebrows"]],
        eyes=pa.EyeType[a["eyes"]], nose=pa.NoseType[a["nose"]], mouth=pa.MouthType[a["mouth"]],
        facial_hair=pa.FacialHairType[a["facial_hair"]], skin_color=pa.SkinColor[a["skin_color"]],
        hair_color=pa.HairColor[a["hair_color"]], facial_hair_color=pa.HairColor[a["facial_hair_color"]],
        accessory=pa.AccessoryType[a["accessory"]], clothing=pa.ClothingType[a["clothing"]],
        clothing_color=pa.ClothingColor[a["clothing_color"]], shirt_graphic=pa.ClothingGraphic[a["shirt_graphic"]],
        shirt_text="", title=None,
    )
    return render_svg_string(avatar.render(), px, "avatar")


def read_avatars(n: int, px: int, seed: int = 0) -> Iterator[Item]:
    rng = np.random.default_rng(seed)
    for i in range(n):
        a = random_attributes(rng)
        img = render_avatar(a, px)
        if img is not None:
            label, _ = describe(a)
            yield Item(f"avatar-{seed}-{i:05d}", label, img, captions=captions(a), attributes=a)
