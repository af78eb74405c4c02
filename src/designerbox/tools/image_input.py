"""Safe image loading for every tool: one function, `load_image`, that turns a file (or bytes) into an
upright 8-bit RGB or RGBA PIL image, or raises ImageInputError with a message naming the problem.

What it handles:
  - EXIF orientation (phones store portraits sideways plus a rotate tag): applied, then dropped;
  - modes: CMYK (through its ICC profile when it has one), palette (P/PA, with transparency -> RGBA),
    16- and 32-bit greyscale (I;16*, I, F: scaled to 0..255, not clipped as Pillow's convert would),
    LA/La/RGBa (-> RGBA), L/1/YCbCr/LAB/HSV (-> RGB);
  - animated GIF/WebP/APNG: the first frame, with a note saying so;
  - truncated files, non-images, empty files, folders: ImageInputError naming the problem.

Huge images (the policy): images up to `max_pixels` (default 25 MP: a 12 MP phone photo loads as
it is) are used at full size. Larger ones, up to `max_input_pixels` (default 100 MP), are
downscaled to fit `max_pixels` while decoding: JPEGs are decoded straight at a reduced DCT scale
(Pillow's `draft`: 1/2, 1/4 or 1/8 when that is still >= the target), other formats decode once and
are reduced. Memory therefore stays below about 4 bytes x `max_input_pixels` (400 MB) at the very
worst. Anything over `max_input_pixels` is refused from its header, before any pixel is decoded.
`on_large="refuse"` refuses everything over `max_pixels` instead of downscaling. The record notes
every change (orientation, mode, frame, downscale).
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageCms, ImageOps

MAX_PIXELS = 25_000_000          # full-size working limit
MAX_INPUT_PIXELS = 100_000_000   # refused above this, whatever on_large says
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP")


class ImageInputError(ValueError):
    """The input is missing, not an image, damaged, or too large."""


@dataclass
class LoadedImage:
    image: Image.Image                      # 8-bit RGB or RGBA, upright
    source: dict                            # what the record says about the input
    notes: list[str] = field(default_factory=list)


def load_image(src: str | Path | bytes, *, name: str | None = None, max_pixels: int = MAX_PIXELS,
               max_input_pixels: int = MAX_INPUT_PIXELS,
               on_large: Literal["downscale", "refuse"] = "downscale") -> LoadedImage:
    """Read one image safely (see the module docstring); `name` labels bytes in messages."""
    if on_large not in ("downscale", "refuse"):
        raise ValueError(f"on_large must be 'downscale' or 'refuse', not {on_large!r}")
    data, label = _read(src, name)
    notes: list[str] = []
    # 1. identify from the header only (no pixels decoded yet)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies below
            im = Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError:
        raise ImageInputError(f"{label} is not an image (its format is not recognised); supported formats: "
                              f"{', '.join(FORMATS)}") from None
    except Image.DecompressionBombError as err:  # Pillow's own guard, at twice its MAX_IMAGE_PIXELS
        found = re.search(r"\((\d+) pixels\)", str(err))
        pixels = f"{int(found.group(1)) / 1e6:.1f} megapixels" if found else "its size"
        raise ImageInputError(f"{label} is too large ({pixels}), over the limit of "
                              f"{max_input_pixels / 1e6:.0f} megapixels; downscale it first") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageInputError(f"{label} is not a readable image: {err}") from None
    w, h = im.size
    fmt = im.format or "?"
    source = {"file": label, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "format": fmt,
              "size": [w, h], "mode": im.mode}
    # 2. the size policy, from the header
    if w * h > max_input_pixels or (w * h > max_pixels and on_large == "refuse"):
        limit = max_input_pixels if w * h > max_input_pixels else max_pixels
        raise ImageInputError(f"{label} is {w}x{h} ({w * h / 1e6:.1f} megapixels), over the limit of "
                              f"{limit / 1e6:.0f} megapixels; "
                              + ("downscale it first" if limit == max_input_pixels else
                                 "downscale it first, or load with on_large='downscale'"))
    # 3. the first frame of an animation
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        im.seek(0)
        notes.append(f"animated {fmt} with {frames} frames: the first frame is used")
    # 4. decode (a JPEG over the limit is decoded at a reduced scale)
    scale = (max_pixels / (w * h)) ** 0.5 if w * h > max_pixels else 1.0
    if scale < 1.0 and fmt == "JPEG":
        im.draft(im.mode, (max(1, int(w * scale)), max(1, int(h * scale))))
    try:
        im.load()
    except OSError as err:
        what = "truncated or damaged" if "truncated" in str(err) or "broken" in str(err) else "damaged"
        raise ImageInputError(f"{label} is a {what} {fmt} file (the image data ends early or is corrupt): "
                              f"{err}") from None
    except (SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageInputError(f"{label} is a damaged {fmt} file: {err}") from None
    # 5. upright, then 8-bit RGB(A)
    try:
        upright = ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError, KeyError) as err:  # a broken EXIF block: keep the pixels as stored
        upright = im
        notes.append(f"EXIF orientation unreadable ({err}); used as stored")
    orientation = im.getexif().get(0x0112, 1) if hasattr(im, "getexif") else 1
    if orientation not in (None, 1):
        notes.append(f"EXIF orientation {orientation} applied")
    image = to_rgb8(upright, notes)
    # 6. downscale what is still over the limit
    if image.width * image.height > max_pixels:
        tw, th = max(1, int(w * scale)), max(1, int(h * scale))
        if upright.size != im.size:  # rotated by EXIF
            tw, th = th, tw
        image = image.resize((tw, th), Image.LANCZOS, reducing_gap=3.0)
    if image.width * image.height < w * h and scale < 1.0:
        notes.append(f"downscaled from {w}x{h} to {image.width}x{image.height} "
                     f"(over the {max_pixels / 1e6:.0f} megapixel working limit)")
    source["notes"] = notes
    source["loaded_size"] = list(image.size)
    return LoadedImage(image=image, source=source, notes=notes)


def load_option_image(src: str, *, name: str, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """An image an option names: a file path (CLI, Python) or a data URL (data:image/png;base64,...: the
    REST API, which refuses paths); `name` (the option) labels it in messages and the record."""
    if src.startswith("data:"):
        import base64
        import binascii

        header, _, payload = src.partition(",")
        try:
            data = base64.b64decode(payload, validate=True) if header.endswith(";base64") else payload.encode()
        except (binascii.Error, ValueError):
            raise ImageInputError(f"{name} is a data URL whose base64 payload does not decode") from None
        return load_image(data, name=name, max_pixels=max_pixels)
    return load_image(src, name=None, max_pixels=max_pixels)


def _read(src: str | Path | bytes, name: str | None) -> tuple[bytes, str]:
    if isinstance(src, (bytes, bytearray, memoryview)):
        data, label = bytes(src), name or "the uploaded image"
    else:
        path = Path(src)
        label = name or path.name
        if path.is_dir():
            raise ImageInputError(f"{path} is a folder, not an image file")
        if not path.is_file():
            raise ImageInputError(f"input image not found: {path}")
        data = path.read_bytes()
    if not data:
        raise ImageInputError(f"{label} is empty (0 bytes)")
    return data, label


def to_rgb8(im: Image.Image, notes: list[str]) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB, or RGBA when the image has transparency."""
    mode = im.mode
    if mode in ("RGB", "RGBA"):
        return im
    if mode == "CMYK":
        notes.append("CMYK converted to RGB" + (" through its ICC profile" if im.info.get("icc_profile") else ""))
        return _cmyk_to_rgb(im)
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        return im.convert("RGBA" if has_alpha else "RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        notes.append(f"{_bits(mode)} greyscale scaled to 8 bits")
        return Image.fromarray(_to_uint8(np.asarray(im), mode)).convert("RGB")
    if mode in ("LA", "La", "RGBa", "PA"):
        return im.convert("RGBA")
    return im.convert("RGB")  # L, 1, YCbCr, LAB, HSV


def _bits(mode: str) -> str:
    return "32-bit float" if mode == "F" else "32-bit" if mode == "I" else "16-bit"


def _to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    a = a.astype(np.float64)
    if mode == "F":
        top = 1.0 if a.max(initial=0) <= 1.0 else 255.0 if a.max(initial=0) <= 255 else a.max()
    elif mode.startswith("I;16"):
        top = 65535.0
    else:  # "I": 16-bit PNGs open as I; other sources may use any range
        hi = a.max(initial=0)
        top = 255.0 if hi <= 255 else 65535.0 if hi <= 65535 else hi
    return np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    icc = im.info.get("icc_profile")
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError) as err:
            raise ImageInputError(f"the CMYK image's ICC profile cannot be used: {err}") from None
    return im.convert("RGB")
