"""Text contrast as WCAG 2.x measures it, for flat colours and for text laid over a photo.

    relative luminance   L = 0.2126 R + 0.7152 G + 0.0722 B of the linearised sRGB channels,
                         c = C/12.92 if C <= 0.04045 else ((C + 0.055)/1.055)^2.4, C = channel/255
                         (WCAG 2.x, "relative luminance"; WCAG 2.0 printed the sRGB threshold as 0.03928,
                         which gives the same value for every 8-bit channel)
    contrast ratio       (L_lighter + 0.05) / (L_darker + 0.05), from 1 (same colour) to 21 (black on white)
    requirements         1.4.3 (AA): 4.5 for body text, 3 for large text (>= 24 px, or >= 18.66 px bold,
                         i.e. 18 pt and 14 pt at 96 px per inch); 1.4.11: 3 for the edge of a button

Over a photo there is no single background colour: `ratio_over` takes the ratio against every
pixel under the text's box and reports a low percentile (the 5th by default): a few stray pixels do
not decide, a bright patch under a tenth of the text does.
"""

from __future__ import annotations

import re

import numpy as np

HEX = re.compile(r"^#[0-9a-fA-F]{6}$")

BODY, LARGE, NON_TEXT = 4.5, 3.0, 3.0


def hex_rgb(colour: str) -> tuple[int, int, int]:
    if not HEX.match(colour or ""):
        raise ValueError(f"a colour is #RRGGBB, not {colour!r}")
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def rgb_hex(rgb) -> str:
    return "#{:02X}{:02X}{:02X}".format(*(int(round(float(c))) for c in rgb[:3]))


def relative_luminance(rgb) -> np.ndarray:
    """(..., 3) sRGB in 0..255 -> (...) relative luminance in 0..1."""
    c = np.asarray(rgb, np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def contrast_ratio(a, b) -> float:
    """The WCAG contrast ratio of two colours (#RRGGBB strings or RGB triples), 1..21."""
    la = float(relative_luminance(hex_rgb(a) if isinstance(a, str) else a))
    lb = float(relative_luminance(hex_rgb(b) if isinstance(b, str) else b))
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


def ratios(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise contrast ratios of two arrays of RGB colours ((..., 3), broadcast)."""
    la, lb = relative_luminance(a), relative_luminance(b)
    return (np.maximum(la, lb) + 0.05) / (np.minimum(la, lb) + 0.05)


def ratio_over(text, background: np.ndarray, percentile: float = 5.0) -> float:
    """The ratio of the text colour against the pixels of `background` ((H, W, 3) or (N, 3) uint8):
    the `percentile`-th lowest of the per-pixel ratios."""
    lt = float(relative_luminance(hex_rgb(text) if isinstance(text, str) else text))
    lb = relative_luminance(background.reshape(-1, 3))
    ratios = (np.maximum(lt, lb) + 0.05) / (np.minimum(lt, lb) + 0.05)
    return float(np.percentile(ratios, percentile))


def is_large(size_px: float, bold: bool) -> bool:
    """WCAG's large text: 18 pt (24 px), or 14 pt (18.66 px) when bold."""
    return size_px >= (18.66 if bold else 24.0)


def required(size_px: float, bold: bool, body: bool = False) -> float:
    """The ratio a text needs: 3 for large text, 4.5 otherwise; `body` holds it to 4.5 whatever its size."""
    return BODY if body or not is_large(size_px, bold) else LARGE


def best_colour(candidates: list[str], background) -> tuple[str, float]:
    """The candidate with the highest ratio against a flat background colour, and that ratio."""
    scored = [(contrast_ratio(c, background), c) for c in candidates]
    ratio, colour = max(scored, key=lambda s: s[0])
    return colour, ratio
