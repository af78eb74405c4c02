"""Classic photo corrections on (H, W, 3) uint8 RGB arrays, each one OpenCV/numpy step with one knob.

    denoise(rgb, amount, method)      non-local means (Buades et al. 2005) or a bilateral filter
    white_balance(rgb, method)        grey world (Buchsbaum 1980) or white patch on a percentile
    local_contrast(rgb, amount)       CLAHE (Zuiderveld 1994) on the L channel of CIELAB
    sharpen(rgb, amount, radius)      unsharp mask on luminance (no colour fringes)

amount 0 returns the input unchanged (the same array), so a step that is off costs nothing.
"""

from __future__ import annotations

import cv2
import numpy as np

MAX_GAIN = 1.6     # white balance never scales a channel by more than this (or less than 1 / this)


def denoise(rgb: np.ndarray, amount: float, method: str = "nlmeans") -> np.ndarray:
    """amount 0..1: 0 off; 1 strong (nlmeans: filter strength h = 12 on 0..255; bilateral: sigma 60)."""
    if amount <= 0:
        return rgb
    if method == "nlmeans":
        h = 2.0 + 10.0 * amount
        return cv2.fastNlMeansDenoisingColored(rgb, None, h, h, 7, 21)  # channel order does not matter here
    if method == "bilateral":
        return cv2.bilateralFilter(rgb, 7, 10 + 50 * amount, 5)
    raise ValueError(f"unknown denoise method {method!r}; valid: nlmeans, bilateral")


def white_balance(rgb: np.ndarray, method: str) -> tuple[np.ndarray, list[float]]:
    """(balanced image, the per-channel gains). grey-world: every channel's mean -> the mean grey;
    percentile: every channel's 99th percentile (the brightest near-white) -> the highest of them.
    Gains are limited to [1/MAX_GAIN, MAX_GAIN] so a photo of one colour (a sunset, a lawn) is not
    turned grey; near-black and clipped pixels are left out of the statistics."""
    if method == "off":
        return rgb, [1.0, 1.0, 1.0]
    x = rgb.reshape(-1, 3).astype(np.float32)
    step = max(1, len(x) // 500_000)  # statistics on at most ~0.5 M pixels
    sample = x[::step]
    keep = (sample.max(axis=1) < 250) & (sample.min(axis=1) > 5)
    sample = sample[keep] if keep.sum() > 100 else sample
    if method == "grey-world":
        means = sample.mean(axis=0)
        gains = means.mean() / np.maximum(means, 1.0)
    elif method == "percentile":
        tops = np.percentile(sample, 99, axis=0)
        gains = tops.max() / np.maximum(tops, 1.0)
    else:
        raise ValueError(f"unknown white balance {method!r}; valid: off, grey-world, percentile")
    gains = np.clip(gains, 1 / MAX_GAIN, MAX_GAIN).astype(np.float32)
    lut = np.clip(np.arange(256, dtype=np.float32)[:, None] * gains[None, :] + 0.5, 0, 255).astype(np.uint8)
    out = np.empty_like(rgb)
    for c in range(3):
        out[..., c] = lut[:, c][rgb[..., c]]  # one table lookup per channel: cheap on 12 MP
    return out, [round(float(g), 4) for g in gains]


def local_contrast(rgb: np.ndarray, amount: float, tiles: int = 8) -> np.ndarray:
    """amount 0..1 -> CLAHE clip limit 1 + 2 * amount on L (a, b untouched), blended by amount."""
    if amount <= 0:
        return rgb
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    clahe = cv2.createCLAHE(clipLimit=1.0 + 2.0 * amount, tileGridSize=(tiles, tiles))
    L = lab[..., 0]
    lab[..., 0] = cv2.addWeighted(clahe.apply(L), amount, L, 1.0 - amount, 0)
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def sharpen(rgb: np.ndarray, amount: float, radius: float = 1.2, threshold: int = 2) -> np.ndarray:
    """Unsharp mask on L: L + amount * (L - blur(L, sigma=radius)) where |L - blur| > threshold."""
    if amount <= 0:
        return rgb
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    L = lab[..., 0].astype(np.float32)
    detail = L - cv2.GaussianBlur(L, (0, 0), radius)
    detail[np.abs(detail) <= threshold] = 0.0
    lab[..., 0] = np.clip(L + amount * detail + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
