"""Fit a drawn image to an asked size it was not drawn at (platform sizes beyond a model's range)."""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image


def edge_colour(img: Image.Image) -> tuple[int, int, int]:
    """The median colour of the image's one-pixel border: the background to pad with."""
    a = np.asarray(img.convert("RGB"))
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])  # (2W + 2H, 3)
    return tuple(int(c) for c in np.median(border, axis=0))


def fit_to_size(img: Image.Image, width: int, height: int, upscale: Callable[[Image.Image], Image.Image] | None = None,
                upscaler_name: str = "") -> tuple[Image.Image, str]:
    """Scale to fit inside width x height, pad the rest with the edge colour.

    With an `upscale` function (a x2/x4 super-resolution model) the image is first upscaled while
    the target is still at least twice as large (the cascade); Lanczos does the rest.
    Returns the image and a note for the record saying what was done.
    """
    w0, h0 = img.size
    note = f"drawn at {w0}x{h0}"
    while upscale is not None and min(width / img.width, height / img.height) >= 2:
        img = upscale(img)
        note += f", upscaled to {img.width}x{img.height} ({upscaler_name})"
    scale = min(width / img.width, height / img.height)
    w1, h1 = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    scaled = img.resize((w1, h1), Image.LANCZOS) if (w1, h1) != img.size else img
    note += f", resized to {w1}x{h1} (lanczos)"
    if (w1, h1) == (width, height):
        return scaled, note
    colour = edge_colour(img)
    canvas = Image.new("RGB", (width, height), colour)
    canvas.paste(scaled, ((width - w1) // 2, (height - h1) // 2))
    return canvas, note + f", centred on {width}x{height} padded with the edge colour rgb{colour}"


def fill_size(img: Image.Image, width: int, height: int, upscale: Callable[[Image.Image], Image.Image] | None = None,
              upscaler_name: str = "") -> tuple[Image.Image, str]:
    """Scale to cover width x height and crop the overflow evenly (an outpainted canvas whose aspect is
    within a size step of the target's: a few generated border pixels go, nothing is padded or stretched).
    Returns the image and a note for the record."""
    w0, h0 = img.size
    note = f"drawn at {w0}x{h0}"
    while upscale is not None and min(width / img.width, height / img.height) >= 2:
        img = upscale(img)
        note += f", upscaled to {img.width}x{img.height} ({upscaler_name})"
    scale = max(width / img.width, height / img.height)
    w1, h1 = max(width, round(img.width * scale)), max(height, round(img.height * scale))
    scaled = img.resize((w1, h1), Image.LANCZOS) if (w1, h1) != img.size else img
    note += f", resized to {w1}x{h1} (lanczos)"
    if (w1, h1) == (width, height):
        return scaled, note
    left, top = (w1 - width) // 2, (h1 - height) // 2
    return scaled.crop((left, top, left + width, top + height)), note + f", centre {width}x{height} cropped"
