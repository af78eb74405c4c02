"""Super-resolution: a PIL image in, the image `model.scale` times larger out (x4 for esrgan-*-x4).

Big inputs are cut into tiles that each carry `model.receptive_radius` pixels of context on every
side; only each tile's centre is kept, so the seams are cropped, not blended, and a tiled result
equals the whole-image result (up to float32 rounding ties). Memory is bounded by the tile size.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

DEFAULT_TILE = 128               # input pixels per tile side: medium x4 needs about 0.4 GB per tile
MIN_TILE = 16
MAX_OUTPUT_PIXELS = 8192 * 8192   # 64 MP: 192 MiB of RGB output


class UpscaleError(ValueError):
    """The input cannot be upscaled (not an image, empty, too large, a bad tile size)."""


def upscale(model: torch.nn.Module, image: Image.Image, tile: int | None = None) -> Image.Image:
    """Upscale `image` by `model.scale` (an RDN from `models.esrgan`, or any module mapping RGB 0-255
    (B, 3, H, W) to (B, 3, sH, sW) with `scale` and `receptive_radius` attributes).

    tile   input pixels per tile side; None: DEFAULT_TILE (images up to that size run in one pass)

    RGB goes through the network, clipped to 0..255 and rounded as UpscalerJS does; an alpha channel
    is resized with Lanczos; grayscale stays grayscale. Device and dtype are the model's.
    """
    # 1. check at the boundary, before any work
    scale = int(model.scale)
    tile = DEFAULT_TILE if tile is None else tile
    check_input(image, scale, tile)
    alpha = image.convert("RGBA").getchannel("A") if has_alpha(image) else None
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)  # (H, W, 3) in 0..255
    # 2. the network on each tile with its context; keep the centre, clip, round
    out = upscale_array(model, rgb, tile)  # (sH, sW, 3) uint8
    # 3. back to the input's kind of image
    result = Image.fromarray(out, "RGB")
    if image.mode in ("L", "LA"):
        result = result.convert("L")
    if alpha is not None:
        result.putalpha(alpha.resize(result.size, Image.LANCZOS))
    return result


def upscale_array(model: torch.nn.Module, rgb: np.ndarray, tile: int) -> np.ndarray:
    """(H, W, 3) float32 in 0..255 -> (sH, sW, 3) uint8, one tile of at most tile x tile (+ context) at a time."""
    p = next(model.parameters())
    scale, margin = int(model.scale), int(model.receptive_radius)
    h, w, _ = rgb.shape
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None]  # (1, 3, H, W)
    out = np.empty((h * scale, w * scale, 3), dtype=np.uint8)
    with torch.inference_mode():
        for y0 in range(0, h, tile):
            for x0 in range(0, w, tile):
                y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
                cy0, cx0, cy1, cx1 = max(0, y0 - margin), max(0, x0 - margin), min(h, y1 + margin), min(w, x1 + margin)
                y = model(x[:, :, cy0:cy1, cx0:cx1].to(device=p.device, dtype=p.dtype))  # (1, 3, s*ch, s*cw)
                y = y[0, :, (y0 - cy0) * scale:(y1 - cy0) * scale, (x0 - cx0) * scale:(x1 - cx0) * scale]
                y = y.float().clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0)  # (s*th, s*tw, 3)
                out[y0 * scale:y1 * scale, x0 * scale:x1 * scale] = y.cpu().numpy()
    return out


def has_alpha(image: Image.Image) -> bool:
    return "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info)


def check_input(image, scale: int, tile: int) -> None:
    if not isinstance(image, Image.Image):
        raise UpscaleError(f"upscale needs a PIL image, not {type(image).__name__}; open files with PIL.Image.open")
    if not isinstance(tile, int) or tile < MIN_TILE:
        raise UpscaleError(f"tile must be a whole number of pixels >= {MIN_TILE} (or None for {DEFAULT_TILE}), not {tile!r}")
    w, h = image.size
    if w < 1 or h < 1:
        raise UpscaleError(f"the image is empty ({w}x{h})")
    if w * h * scale**2 > MAX_OUTPUT_PIXELS:
        side = int((MAX_OUTPUT_PIXELS / scale**2) ** 0.5)
        raise UpscaleError(f"a {w}x{h} image upscaled x{scale} would be {w * scale}x{h * scale} "
                           f"({w * h * scale**2 / 1e6:.0f} MP); the limit is {MAX_OUTPUT_PIXELS / 1e6:.0f} MP "
                           f"(about {side}x{side} in): downscale or crop it first")
