"""One contact sheet of every creation tool on skimage's astronaut, coffee and chelsea, through the same
job path as `designerbox tool` (run_tool with the Studio of $DESIGNERBOX_HOME; nothing is saved):

    OMP_NUM_THREADS=1 .venv/bin/python scripts/sheet_tools.py [-o docs/sheets/tools.jpg]

One row per photo, the input first, each cell labelled with its tool and preset:
  astronaut  headshot (LinkedIn studio grey, 4:5 office), social (Instagram story), enhance (a 64 px
             crop enlarged x4 by Real-ESRGAN x4plus, the crop shown beside it), style, avatar from the
             selfie, marketing (square post, kit "Orbit")
  coffee     product (Amazon white, studio gradient with reflection), social (Instagram portrait),
             enhance, style, marketing (web banner, kit "Roastery")
  chelsea    social (X post, Pinterest pin), enhance, style (vintage filter), and two avatars drawn
             from attributes by the built-in model (no photo)
Needs Real-ESRGAN (`make` installs it) and the vintage-photo filter (`designerbox assets install
vintage-photo`); a cell whose model is missing shows the tool's message instead. About a minute here. The photos are skimage's (public domain / CC0 as
skimage lists them), the logos are drawn by scripts/sheet_marketing.py, the fonts are DejaVu.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sheet_marketing import logo  # noqa: E402  (the same drawn logos as the marketing sheet)

from designerbox.jobs.tool import run_tool  # noqa: E402
from designerbox.tools.contact_sheet import labelled_rows  # noqa: E402

CROPS = {"astronaut": (130, 20, 386, 276), "coffee": (170, 60, 426, 316), "chelsea": (60, 0, 316, 256)}
SPACE = {"headline": "Reach for the stars this summer", "subline": "Space camp for ages 10-16. Opens 1 July.",
         "cta": "Book a place"}
CUP = {"headline": "Slow mornings, bold coffee", "subline": "Single-origin espresso, roasted every Friday.",
       "cta": "Order beans"}


def kits(tmp: Path) -> dict[str, dict]:
    return {
        "Orbit": {"name": "Orbit", "colours": {"primary": "#1B2A6B", "secondary": "#FFC914", "background": "#FFFFFF",
                                               "text": "#101736"},
                  "fonts": {"headline": "dejavu-sans-bold", "body": "dejavu-sans"},
                  "logo": str(logo(tmp / "orbit.png", "O", "ORBIT", "#FFC914", "#1B2A6B"))},
        "Roastery": {"name": "Roastery", "colours": {"primary": "#5B2C1A", "secondary": "#E9B872",
                                                     "background": "#FBF4EA", "text": "#2B1A12"},
                     "fonts": {"headline": "dejavu-serif-bold", "body": "dejavu-sans"},
                     "logo": str(logo(tmp / "roastery.png", "R", "ROAST", "#E9B872", "#5B2C1A"))},
    }


def jobs(tmp: Path) -> dict[str, list[tuple]]:
    """Per photo: (label, tool, input ("photo", "crop64" or None: drawn), preset, options)."""
    kit = kits(tmp)
    enhance = ("enhance: Real-ESRGAN x4 of the 64 px crop", "enhance", "crop64", "photo-x4", {})
    return {
        "astronaut": [
            ("headshot linkedin: studio grey", "headshot", "photo", "linkedin", {}),
            ("headshot 4:5: office", "headshot", "photo", "portrait", {"looks": ["office"]}),
            ("social: instagram-story", "social", "photo", None, {"sizes": ["instagram-story"]}),
            enhance,
            ("style: starry", "style", "photo", "starry", {}),
            ("avatar from the selfie", "avatar", "photo", "selfie-512", {}),
            ("marketing: square post (Orbit)", "marketing", "photo", "square-post", dict(SPACE, brand=kit["Orbit"])),
        ],
        "coffee": [
            ("product: amazon white", "product", "photo", "amazon", {"width": 1000, "height": 1000}),
            ("product: studio + reflection", "product", "photo", "studio-reflection", {"width": 1000, "height": 1000}),
            ("social: instagram-portrait", "social", "photo", None, {"sizes": ["instagram-portrait"]}),
            enhance,
            ("style: impressionist", "style", "photo", "impressionist", {}),
            ("marketing: web banner (Roastery)", "marketing", "photo", "banner", dict(CUP, brand=kit["Roastery"])),
        ],
        "chelsea": [
            ("social: x-post", "social", "photo", None, {"sizes": ["x-post"]}),
            ("social: pinterest-pin", "social", "photo", None, {"sizes": ["pinterest-pin"]}),
            enhance,
            ("style: vintage", "style", "photo", "vintage", {}),
            ("avatar drawn: long red hair, glasses, hoodie", "avatar", None, "drawn-512",
             {"hair": "long", "hair_colour": "red", "glasses": "glasses", "clothing": "hoodie", "seed": 1}),
            ("avatar drawn: short black hair, blazer", "avatar", None, "drawn-512",
             {"hair": "short", "hair_colour": "black", "clothing": "blazer", "clothing_colour": "white",
              "disc": "#F6E3C8", "seed": 2}),
        ],
    }


def png_of(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def row(name: str, cells: list[tuple]) -> list[tuple[str, Image.Image | str]]:
    photo = Image.fromarray(getattr(data, name)())
    crop64 = photo.crop(CROPS[name]).resize((64, 64), Image.BICUBIC)
    inputs = {"photo": (f"{name}.png", png_of(photo)), "crop64": (f"{name}-64.png", png_of(crop64))}
    out: list[tuple[str, Image.Image | str]] = [(f"input: skimage {name}", photo)]
    for label, tool, src, preset, options in cells:
        if src == "crop64":
            out.append(("the 64 px crop (shown x4)", crop64.resize((256, 256), Image.NEAREST)))
        t = time.time()
        try:
            (result,) = run_tool(tool, [inputs[src]] if src else [], options, preset, save=False)
            out.append((label, result.image))
        except ValueError as err:  # a missing model or asset: its message in the cell
            out.append((label, f"{type(err).__name__}: {err}"))
        print(f"{name:<10} {label:<46} {time.time() - t:5.1f} s", file=sys.stderr)
    return out


def draw(rows: list[list[tuple[str, Image.Image | str]]], height: int, out: Path | None = None,
         quality: int = 82) -> Image.Image:
    """The sheet, written to out if given: captions under the cells, two lines at most; transparency
    (round avatars, cut-outs) over the sheet's grey."""
    return labelled_rows(rows, out, height=height, quality=quality)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-o", "--output", default="docs/sheets/tools.jpg")
    p.add_argument("--height", type=int, default=256, help="height of each cell in the sheet")
    p.add_argument("--quality", type=int, default=82, help="JPEG quality")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row(name, cells) for name, cells in jobs(Path(tmp)).items()]
    out = Path(args.output)
    draw(rows, args.height, out, args.quality)
    print(f"{out} ({out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
