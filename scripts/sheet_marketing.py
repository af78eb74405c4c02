"""A contact sheet of the marketing and product tools on skimage's photos, through the same job path
as `designerbox tool` (run_tool, not saved to the gallery):

    OMP_NUM_THREADS=1 .venv/bin/python scripts/sheet_marketing.py [-o docs/sheets/marketing-product.jpg]

Row 1: marketing visuals from two brand kits: a square post and a story with the astronaut as the
hero (kit "Orbit", with a drawn logo), a web banner with the coffee (kit "Roastery"), 300x250 and
160x600 ads. Row 2: a LinkedIn banner with the coffee, and the product tool: a synthetic bottle on a
scene (a wall and the coffee photo's wooden table, built here) with a reflection, and on the studio
gradient with a reflection. Every image is labelled with its template and the contrast the tool measured.
The logos and the scene are drawn by this script; the photos are skimage's (public domain / CC0 as
skimage lists them); the fonts are Debian's DejaVu (Bitstream Vera licence).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from skimage import data

from designerbox.jobs.tool import run_tool
from designerbox.tools.contact_sheet import labelled_rows

BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def logo(path: Path, mark: str, word: str, colour: str, ink: str) -> Path:
    """A round mark and a wordmark on transparency."""
    im = Image.new("RGBA", (560, 160), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.ellipse((4, 4, 156, 156), fill=colour)
    d.text((80, 82), mark, font=ImageFont.truetype(BOLD, 84), fill=ink, anchor="mm")
    d.text((180, 82), word, font=ImageFont.truetype(BOLD, 76), fill="#FFFFFF", anchor="lm")
    im.save(path)
    return path


def scene(path: Path) -> Path:
    """A warm wall with a soft light, over a wooden table top taken from the coffee photo."""
    W, H = 1600, 1200
    yy, xx = np.mgrid[:H, :W].astype(np.float32)
    glow = np.exp(-(((xx - 0.5 * W) / (0.5 * W)) ** 2 + ((yy - 0.3 * H) / (0.6 * H)) ** 2))
    wall = np.array([176, 160, 140], np.float32) * (0.75 + 0.3 * glow[..., None])
    wood = Image.fromarray(data.coffee()).crop((490, 0, 600, 280)).rotate(90, expand=True)  # clear of the saucer
    table_h = int(0.3 * H)
    wood = np.asarray(wood.resize((W, table_h), Image.BICUBIC), np.float32)
    wood *= np.linspace(1.0, 0.7, table_h, dtype=np.float32)[:, None, None]  # darker towards the viewer
    img = wall.copy()
    img[H - table_h:] = wood
    img[H - table_h - 3:H - table_h] *= 0.6  # the table's back edge
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.5)).save(path, quality=92)
    return path


def bottle(path: Path) -> Path:
    """A synthetic product shot: a shaded green bottle with a label, on a light grey sweep."""
    W, H = 900, 1200
    bg = np.broadcast_to(np.linspace(236, 214, H, dtype=np.float32)[:, None, None], (H, W, 3)).copy()
    mask = Image.new("L", (W, H))
    d = ImageDraw.Draw(mask)
    d.rounded_rectangle((300, 420, 600, 1080), 60, fill=255)
    d.polygon([(330, 440), (570, 440), (490, 300), (410, 300)], fill=255)
    d.rectangle((410, 170, 490, 310), fill=255)
    x = np.linspace(-1, 1, W, dtype=np.float32)
    shade = (0.55 + 0.45 * np.cos(np.clip(x * 3.2, -np.pi, np.pi)))[None, :, None]
    glass = np.array([30, 120, 80], np.float32) * (0.6 + 0.8 * shade)
    img = np.where(np.asarray(mask)[..., None] > 0, np.broadcast_to(glass, (H, W, 3)), bg)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    ImageDraw.Draw(out).rectangle((300, 620, 600, 840), fill=(244, 236, 220))
    ImageDraw.Draw(out).text((450, 730), "OLIVE\nOIL", font=ImageFont.truetype(BOLD, 56), fill=(30, 70, 50),
                             anchor="mm", align="center")
    ImageDraw.Draw(out).rectangle((400, 150, 500, 200), fill=(160, 120, 40))
    out.save(path, quality=95)
    return path


def png_of(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-o", "--output", default="docs/sheets/marketing-product.jpg")
    p.add_argument("--height", type=int, default=420, help="height of each row's images in the sheet")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="dbx-sheet-"))
    astronaut = ("astronaut.png", png_of(Image.fromarray(data.astronaut())))
    coffee = ("coffee.png", png_of(Image.fromarray(data.coffee())))
    orbit = {"name": "Orbit", "colours": {"primary": "#1B2A6B", "secondary": "#FFC914", "background": "#FFFFFF",
                                          "text": "#101736"},
             "fonts": {"headline": "dejavu-sans-bold", "body": "dejavu-sans"},
             "logo": str(logo(tmp / "orbit.png", "O", "ORBIT", "#FFC914", "#1B2A6B"))}
    roastery = {"name": "Roastery", "colours": {"primary": "#5B2C1A", "secondary": "#E9B872", "background": "#FBF4EA",
                                                "text": "#2B1A12"},
                "fonts": {"headline": "dejavu-serif-bold", "body": "dejavu-sans"},
                "logo": str(logo(tmp / "roastery.png", "R", "ROAST", "#E9B872", "#5B2C1A"))}
    space = {"headline": "Reach for the stars this summer", "subline": "Space camp for ages 10-16. Opens 1 July.",
             "cta": "Book a place"}
    cup = {"headline": "Slow mornings, bold coffee", "subline": "Single-origin espresso, roasted every Friday.",
           "cta": "Order beans"}
    jobs = [  # (label, tool, input, preset, options)
        ("square post", "marketing", astronaut, "square-post", dict(space, brand=orbit)),
        ("story", "marketing", astronaut, "story", dict(space, brand=orbit)),
        ("web banner", "marketing", coffee, "banner", dict(cup, brand=roastery)),
        ("LinkedIn banner", "marketing", coffee, "linkedin-banner", dict(cup, brand=roastery)),
        ("ad", "marketing", astronaut, "ad-300x250", dict(space, headline="Space camp this summer",
                                                                   brand=orbit)),
        ("ad", "marketing", coffee, "ad-160x600", dict(cup, headline="Bold coffee, roasted Fridays",
                                                                brand=roastery)),
        ("product: scene + reflection", "product", ("bottle.jpg", bottle(tmp / "bottle.jpg").read_bytes()), None,
         {"width": 1200, "height": 1200, "background": "scene", "scene": str(scene(tmp / "room.jpg")),
          "reflection": 0.3, "fill": 0.75, "floor": 0.84}),
        ("product: studio + reflection", "product", ("bottle.jpg", (tmp / "bottle.jpg").read_bytes()),
         "studio-reflection", {"width": 1200, "height": 1200}),
    ]
    cells = []
    for label, tool, src, preset, options in jobs:
        (out,) = run_tool(tool, [src], options, preset, save=False)
        d = out.record["details"]
        if tool == "marketing":
            lines = d["contrast"] + [d["cta"]]
            worst = min(lines, key=lambda r: r["ratio"] / r["required"])
            fix = ", ".join(f["fix"] for f in d["fixes"] + ([{"fix": "logo plate"}] if (d["logo"] or {}).get("plate")
                                                              else [])) or "no fix needed"
            note = (f"{label} {d['size'][0]}x{d['size'][1]}; contrast >= {worst['ratio']:.1f}:1 where "
                    f"{worst['required']:g}:1 is needed; {fix}")
        else:
            note = f"{label} {out.image.width}x{out.image.height}"
        cells.append((out.image.convert("RGB"), note))
        print(note, file=sys.stderr)
    rows = [cells[:3] + cells[4:6], [cells[3]] + cells[6:]]
    out_path = Path(args.output)
    labelled_rows([[(note, im) for im, note in row] for row in rows], out_path, height=args.height, gap=16,
                  caption=64, caption_at=(0, 4), caption_lines=3, line_height=19, wrap_min=120, font_size=15)
    print(out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
