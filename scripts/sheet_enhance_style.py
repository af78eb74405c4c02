"""A contact sheet of the enhance and style tools on skimage's astronaut, coffee and chelsea, through the
same job path as `designerbox tool` (run_tool with the Studio of $DESIGNERBOX_HOME, not saved):

    OMP_NUM_THREADS=1 .venv/bin/python scripts/sheet_enhance_style.py [-o docs/sheets/enhance-style.jpg]

Needs the assets `esrgan-medium-x4` and `vintage-photo` installed (`designerbox assets install ...`) and
Real-ESRGAN (`make` installs it); a column whose model is missing says so instead of an image.

One row per photo. Super-resolution columns: a 256x256 crop of the photo (the original), the crop
downscaled x4 to 64x64 (the input, shown enlarged by pixel repetition), then enlarged x4 by Lanczos,
the ported ESRGAN (preset esrgan-x4) and Real-ESRGAN x4plus (preset photo-x4). The other columns are
the whole photo: the clean-up preset (denoise, white balance, contrast, sharpening) on a noisier,
colder copy of it (shown beside it), four painting presets, a skimage picture as the style (a stained
tissue section) and the vintage filter.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from designerbox.jobs.tool import run_tool
from designerbox.tools.contact_sheet import labelled_rows

CELL = 256
CROPS = {"astronaut": (130, 20, 386, 276), "coffee": (170, 60, 426, 316), "chelsea": (60, 0, 316, 256)}
STYLE_IMAGE = "immunohistochemistry"   # skimage's stained tissue section: a pastel ink look


def png(image: Image.Image, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    image.save(path)
    return path


def tool(name: str, path: Path, preset: str | None = None, options: dict | None = None) -> Image.Image | str:
    """One output image, or the error message (shown in the cell) when a model is missing."""
    t = time.time()
    try:
        (out,) = run_tool(name, [path], options, preset, save=False)
    except ValueError as err:
        return str(err)
    print(f"  {name} {preset or options}: {time.time() - t:.1f} s", file=sys.stderr)
    return out.image


def degrade(image: Image.Image) -> Image.Image:
    """A colder, noisier, flatter copy: what the clean-up preset is for."""
    a = np.asarray(image, np.float32) * [0.8, 0.95, 1.2] * 0.8 + 30
    a += np.random.default_rng(0).normal(0, 9, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def row(name: str, tmp: Path) -> list[tuple[str, Image.Image | str]]:
    photo = Image.fromarray(getattr(data, name)())
    print(name, file=sys.stderr)
    hr = photo.crop(CROPS[name])
    lr = png(hr.resize((64, 64), Image.BICUBIC), tmp, f"{name}-64")
    cells = [("original crop", hr), ("input 64 px", Image.open(lr).resize((CELL, CELL), Image.NEAREST)),
             ("x4 Lanczos", Image.open(lr).resize((CELL, CELL), Image.LANCZOS)),
             ("x4 ESRGAN medium", tool("enhance", lr, "esrgan-x4")),
             ("x4 Real-ESRGAN", tool("enhance", lr, "photo-x4"))]
    worn = degrade(photo)
    worn_path = png(worn, tmp, f"{name}-worn")
    cells += [("noisy, cold copy", worn), ("clean-up", tool("enhance", worn_path, "clean-up"))]
    full = png(photo, tmp, name)
    for preset in ("starry", "impressionist", "delft", "oil-blend"):
        cells.append((f"style {preset}", tool("style", full, preset)))
    style_image = png(Image.fromarray(getattr(data, STYLE_IMAGE)()), tmp, "style-image")
    cells.append(("style of a tissue stain", tool("style", full, None, {
        "method": "image", "style_image": str(style_image)})))
    cells.append(("vintage", tool("style", full, "vintage")))
    return cells


def draw(rows: list[list[tuple[str, Image.Image | str]]], out: Path | None = None) -> Image.Image:
    """The sheet, written to out if given: the centred square of each image at CELL x CELL, its label over it."""
    return labelled_rows(rows, out, height=CELL, square=True, gap=6, caption=22, caption_above=True,
                         caption_at=(2, 2), caption_lines=1, font_size=15, ink="black", background="white",
                         message_chars=30, message_lines=12, quality=80)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-o", "--output", default="docs/sheets/enhance-style.jpg")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row(name, Path(tmp)) for name in CROPS]
    draw(rows, Path(args.output))
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
