"""enhance: one photo in, a cleaner and larger photo out.

Steps, in this order (each one option; 0 / "off" skips it):
  1. denoise          non-local means or bilateral (before enlarging: super-resolution sharpens noise too)
  2. white_balance    grey world or white patch (99th percentile)
  3. contrast         CLAHE on L
  4. upscale x2/x4    `upscaler`:
       esrgan-medium / esrgan-slim   the UpscalerJS RDNs ported to PyTorch (an installed asset:
                                     `designerbox assets install esrgan-medium-x4`), x4 native
       realesrgan                    Real-ESRGAN x4plus through ncnn on the CPU (photos; slow: about
                                     12 s per 256x256 input on 2 cores; the `enhance` extra)
       lanczos                       plain resampling
       auto (default)                esrgan-medium, else esrgan-slim when installed, else lanczos (the
                                     record says which ran, and how to install the better one)
     x2 is the x4 network followed by a 2x2 area average (exact per strip: no seams, no ringing).
     The image is enlarged in strips of rows with the network's context above and below, so memory
     is the output plus one strip, whatever the size.
  5. sharpen          unsharp mask on luminance, on the final size (strips, as above)

Size limit: the output may hold at most MAX_OUTPUT_PIXELS (64 MP: 192 MiB of RGB); a 12 MP photo
can be enlarged x2 (48 MP) but not x4 (192 MP): that is refused before any work, naming the limit.
An alpha channel is kept (resized with Lanczos).
"""

from __future__ import annotations

from typing import Callable, Literal

import cv2
import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from designerbox.pipelines import photo_adjust
from designerbox.tools.registry import Tool, ToolContext, ToolImage

MAX_OUTPUT_PIXELS = 64_000_000
ESRGAN = {"esrgan-medium": "esrgan-medium-x4", "esrgan-slim": "esrgan-slim-x4"}
STRIP_ROWS = 96                 # input rows per strip (x4_function gives each network's own)


class EnhanceError(ValueError):
    """The enhancement cannot run as asked (too large, a backend that is not installed)."""


class EnhanceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    scale: Literal[1, 2, 4] = Field(2, description="enlargement: 1 (none), 2 or 4")
    upscaler: Literal["auto", "esrgan-medium", "esrgan-slim", "realesrgan", "lanczos"] = Field(
        "auto", description="super-resolution: auto = ESRGAN when installed, else Lanczos; realesrgan: "
                            "Real-ESRGAN x4plus (ncnn, best on photos, slow)")
    denoise: float = Field(0.0, ge=0.0, le=1.0, description="noise removal, 0 (off) to 1 (strong)")
    denoise_method: Literal["nlmeans", "bilateral"] = Field("nlmeans", description="nlmeans (better) or "
                                                            "bilateral (faster)")
    white_balance: Literal["off", "grey-world", "percentile"] = Field("off", description="automatic white "
                                                                       "balance")
    contrast: float = Field(0.0, ge=0.0, le=1.0, description="local contrast (CLAHE on lightness), 0 to 1")
    sharpen: float = Field(0.0, ge=0.0, le=2.0, description="unsharp mask amount on the final size, 0 to 2")
    sharpen_radius: float = Field(1.2, ge=0.3, le=5.0, description="unsharp mask radius, output pixels")


def check_size(w: int, h: int, scale: int) -> None:
    if w * h * scale**2 > MAX_OUTPUT_PIXELS:
        largest = {s: MAX_OUTPUT_PIXELS / s**2 / 1e6 for s in (2, 4)}
        raise EnhanceError(f"a {w}x{h} image ({w * h / 1e6:.1f} MP) enlarged x{scale} would be {w * scale}x{h * scale} "
                           f"({w * h * scale**2 / 1e6:.0f} MP); the limit is {MAX_OUTPUT_PIXELS / 1e6:.0f} MP of output "
                           f"(x4 takes up to {largest[4]:.0f} MP in, x2 up to {largest[2]:.0f} MP): use a smaller scale "
                           "or downscale the image first")


def choose_upscaler(opts: EnhanceOptions, ctx: ToolContext | None) -> tuple[str, str | None]:
    """(backend, note): the backend that runs, and a note when `auto` fell back to Lanczos."""
    installed = set(ctx.installed("upscaler")) if ctx is not None else set()
    if opts.upscaler == "auto":
        for name, model_id in ESRGAN.items():
            if model_id in installed:
                return name, None
        return "lanczos", ("no super-resolution model is installed, so Lanczos enlarged it; for ESRGAN: "
                           "`designerbox assets install esrgan-medium-x4`")
    if opts.upscaler in ESRGAN and ESRGAN[opts.upscaler] not in installed:
        raise EnhanceError(f"upscaler {opts.upscaler!r} needs the {ESRGAN[opts.upscaler]} model: install it with "
                           f"`designerbox assets install {ESRGAN[opts.upscaler]}`; installed upscalers: "
                           f"{', '.join(sorted(installed)) or 'none'} (or use upscaler=lanczos / realesrgan)")
    return opts.upscaler, None


def x4_function(backend: str, ctx: ToolContext | None) -> tuple[Callable[[np.ndarray], np.ndarray], int, int]:
    """(uint8 (h, w, 3) -> uint8 (4h, 4w, 3), rows of context it needs above and below a strip, rows per
    strip): a strip with its context is one row of the network's own tiles, so no row is computed twice
    more than the context needs."""
    if backend in ESRGAN:
        from designerbox.pipelines.upscale import DEFAULT_TILE, upscale_array

        _, net = ctx.model(ESRGAN[backend])
        r = int(net.receptive_radius)
        return (lambda a: upscale_array(net, a.astype(np.float32), tile=DEFAULT_TILE)), r, DEFAULT_TILE - 2 * r
    if backend == "realesrgan":
        from designerbox.pipelines.ncnn_upscale import MARGIN, TILE, NcnnUnavailable, load_net, realesrgan_x4

        try:
            net = load_net("realesrgan-x4plus")
        except NcnnUnavailable as err:
            raise EnhanceError(str(err)) from None
        return (lambda a: realesrgan_x4(net, a, band=True)), MARGIN, TILE
    raise ValueError(f"no x4 network for {backend!r}")


def enlarge(rgb: np.ndarray, scale: int, x4: Callable[[np.ndarray], np.ndarray], context: int,
            rows: int = STRIP_ROWS) -> np.ndarray:
    """x2 or x4 by the x4 network, one strip of `rows` input rows (plus `context` rows each side) at a time."""
    h, w, _ = rgb.shape
    out = np.empty((h * scale, w * scale, 3), dtype=np.uint8)
    for y0 in range(0, h, rows):
        y1 = min(y0 + rows, h)
        c0, c1 = max(0, y0 - context), min(h, y1 + context)
        big = x4(rgb[c0:c1])[(y0 - c0) * 4:(y1 - c0) * 4]  # (4 * rows, 4w, 3)
        if scale == 2:  # 2x2 box average: exact within the strip, so strips meet without seams
            big = cv2.resize(big, (w * 2, (y1 - y0) * 2), interpolation=cv2.INTER_AREA)
        out[y0 * scale:y1 * scale] = big
    return out


def by_rows(fn: Callable[[np.ndarray], np.ndarray], rgb: np.ndarray, context: int, rows: int = 512) -> np.ndarray:
    """Apply a local filter strip by strip (bounded temporaries), each strip seeing `context` rows around it."""
    h = rgb.shape[0]
    if h <= rows:
        return fn(rgb)
    out = np.empty_like(rgb)
    for y0 in range(0, h, rows):
        y1 = min(y0 + rows, h)
        c0, c1 = max(0, y0 - context), min(h, y1 + context)
        out[y0:y1] = fn(rgb[c0:c1])[y0 - c0:y1 - c0]
    return out


def run(image: Image.Image, opts: EnhanceOptions, ctx: ToolContext | None = None) -> list[ToolImage]:
    w, h = image.size
    check_size(w, h, opts.scale)
    backend, note = choose_upscaler(opts, ctx) if opts.scale > 1 else ("none", None)
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    rgb = np.asarray(image.convert("RGB"))
    steps = []
    # 1-3. corrections at the input size
    if opts.denoise > 0:
        rgb = photo_adjust.denoise(rgb, opts.denoise, opts.denoise_method)
        steps.append(f"denoise {opts.denoise_method} {opts.denoise}")
    gains = None
    if opts.white_balance != "off":
        rgb, gains = photo_adjust.white_balance(rgb, opts.white_balance)
        steps.append(f"white balance {opts.white_balance}")
    if opts.contrast > 0:
        rgb = photo_adjust.local_contrast(rgb, opts.contrast)
        steps.append(f"contrast {opts.contrast}")
    # 4. enlarge
    if backend == "lanczos":
        rgb = np.asarray(Image.fromarray(rgb).resize((w * opts.scale, h * opts.scale), Image.LANCZOS))
    elif backend != "none":
        x4, context, rows = x4_function(backend, ctx)
        rgb = enlarge(rgb, opts.scale, x4, context, rows)
    if backend != "none":
        steps.append(f"x{opts.scale} {backend}")
    # 5. sharpen on the final size
    if opts.sharpen > 0:
        radius = opts.sharpen_radius
        rgb = by_rows(lambda a: photo_adjust.sharpen(a, opts.sharpen, radius), rgb, context=int(4 * radius) + 2)
        steps.append(f"sharpen {opts.sharpen}")
    out = Image.fromarray(rgb, "RGB")
    if alpha is not None:
        out.putalpha(alpha.resize(out.size, Image.LANCZOS))
    return [ToolImage(name="enhanced", image=out, details={
        "steps": steps, "upscaler": backend, "model": (ESRGAN | {"realesrgan": "realesrgan-x4plus"}).get(backend),
        "white_balance_gains": gains, "note": note, "size": [out.width, out.height]})]


TOOL = Tool(name="enhance", version="1.0", options=EnhanceOptions, run=run, uses_models=True,
            summary="super-resolution x2/x4 (ESRGAN, Real-ESRGAN), denoise, white balance, contrast, sharpening")
