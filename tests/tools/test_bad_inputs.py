"""Bad input, for every tool (issue 7): each tool of the registry through run_tool, with its cheapest
preset and options, on a file that is not an image, a truncated JPEG, a 50-megapixel JPEG, a header
claiming 120 megapixels, 16-bit greyscale PNG, CMYK JPEG, palette PNG, animated GIF, an EXIF-rotated
JPEG and a flat grey image. Each gives a clear error naming the problem, or the right result.

Every awkward input is made from one photo per tool (skimage's coffee cup for product; the astronaut,
a face, for the others), so "the right result" is checked against the tool's output on the plain RGB
version of the same pixels: the same size, and the same or close pixels (orientation and colours
handled)."""

from __future__ import annotations

import io
import struct
import zlib
from functools import lru_cache

import numpy as np
import pytest
from PIL import Image

from designerbox.jobs.tool import run_tool
from designerbox.tools.image_input import ImageInputError
from designerbox.tools.registry import TOOL_MODULES

# the cheapest way to run each tool: (preset, options)
CHEAP = {
    "product": ("ebay", {"width": 256, "height": 256, "work_size": 128}),
    "social": (None, {"sizes": ["instagram-post"]}),
    "marketing": ("ad-300x250", {"headline": "Spring sale"}),
    "enhance": ("clean-up", {}),
    "style": ("starry", {"max_side": 256}),
    "headshot": ("linkedin", {"width": 128, "height": 128}),
    "avatar": ("selfie-512", {"style_size": 256}),
}
FACE_TOOLS = {"headshot", "avatar"}   # they need one person's face and refuse a photo without one
SAME_SIZE = {"enhance", "style"}      # their output has the input's size (enhance's clean-up is x1)
TOOLS = list(TOOL_MODULES)


def test_every_tool_is_covered():
    assert set(CHEAP) == set(TOOL_MODULES)


# --- the inputs ------------------------------------------------------------------------------------

def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


@lru_cache(maxsize=None)
def photo(name: str) -> Image.Image:
    """Landscape, so a lost rotation changes the shape: the coffee cup 450x300 for product, else the
    astronaut 448x336 (her face about 80 px wide)."""
    data = pytest.importorskip("skimage.data")
    if name == "product":
        return Image.fromarray(data.coffee()).resize((450, 300), Image.LANCZOS)
    return Image.fromarray(data.astronaut()).crop((0, 0, 512, 384)).resize((448, 336), Image.LANCZOS)


@lru_cache(maxsize=None)
def quantized(name: str) -> Image.Image:
    return photo(name).quantize(256, dither=Image.Dither.NONE)


@lru_cache(maxsize=None)
def baseline(name: str, source: str = "photo"):
    """The tool's output on the plain RGB JPEG of the photo, on the PNG of its 256 colours in RGB
    (source="quantized") or of its 8-bit grey (source="grey"): what the awkward inputs should give."""
    if source == "quantized":
        return run(name, encode(quantized(name).convert("RGB"), "PNG"), "rgb.png")
    if source == "grey":
        return run(name, encode(photo(name).convert("L"), "PNG"), "grey8.png")
    return run(name, encode(photo(name), "JPEG", quality=95), "photo.jpg")


def run(name: str, data: bytes, label: str, **kw):
    preset, options = CHEAP[name]
    return run_tool(name, [(label, data)], options, preset, save=False, **kw)


def diff(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference over RGB (alpha-premultiplied on white), 0..255."""
    def rgb(im):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, im).convert("RGB")).astype(np.float32)
    return float(np.abs(rgb(a) - rgb(b)).mean())


def same_result(outs, name: str, tolerance: float, source: str = "photo") -> None:
    base = baseline(name, source)
    assert [o.name for o in outs] == [o.name for o in base]
    for o, b in zip(outs, base):
        assert o.image.size == b.image.size and o.image.mode == b.image.mode, (o.name, o.image.size, b.image.size)
        d = diff(o.image, b.image)
        assert d < tolerance, f"{name} {o.name}: mean difference {d:.1f} from the plain photo's output"


@pytest.fixture(autouse=True)
def _home(home):
    """A fresh DESIGNERBOX_HOME (tests/conftest.py): the tools that use models get the Studio from it."""


# --- refused with a message naming the problem -----------------------------------------------------

@pytest.mark.parametrize("name", TOOLS)
def test_not_an_image(name):
    with pytest.raises(ImageInputError, match=r"notes\.txt is not an image .*supported formats: PNG, JPEG"):
        run(name, b"Meeting notes, Tuesday: bring the product photos.\n", "notes.txt")


@pytest.mark.parametrize("name", TOOLS)
def test_truncated_jpeg(name):
    data = encode(photo(name), "JPEG", quality=95)
    with pytest.raises(ImageInputError, match=r"cut\.jpg is a truncated or damaged JPEG file"):
        run(name, data[: len(data) // 2], "cut.jpg")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height (8-bit RGB) and holds one row: refused from its header, or the
    decoder would have to allocate width x height x 3 bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(1 + 3 * width)))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("name", TOOLS)
def test_over_100_megapixels_is_refused_from_the_header(name):
    data = png_header_only(12_000, 10_000)  # 120 MP: 360 MB decoded; the file is a few KB
    assert len(data) < 50_000
    with pytest.raises(ImageInputError, match=r"huge\.png is 12000x10000 \(120\.0 megapixels\), over the limit "
                                              r"of 100 megapixels; downscale it first"):
        run(name, data, "huge.png")


# --- handled: the right result ---------------------------------------------------------------------

@lru_cache(maxsize=None)
def jpeg_50mp(photo_of: str) -> bytes:
    """8660x5774 (50.0 MP) greyscale JPEG of the photo (stretched to 3:2)."""
    return encode(photo(photo_of).convert("L").resize((8660, 5774), Image.BILINEAR), "JPEG", quality=80)


@pytest.mark.parametrize("name", TOOLS)
def test_50_megapixels_is_decoded_small(name):
    """Over the working limit, a JPEG is decoded at a reduced DCT scale (memory bounded: see
    tests/tools/test_image_input.py) and downscaled to the limit; the tool runs on that, and says so."""
    outs = run(name, jpeg_50mp("product" if name == "product" else "astronaut"), "huge.jpg", max_pixels=400_000)
    src = outs[0].record["input"]
    assert src["size"] == [8660, 5774]
    w, h = src["loaded_size"]
    assert w * h <= 400_000 and abs(w / h - 8660 / 5774) < 0.01
    assert any(n.startswith("downscaled from 8660x5774") for n in src["notes"])
    for o, b in zip(outs, baseline(name)):
        assert o.image.size == ((w, h) if name in SAME_SIZE else b.image.size)


@pytest.mark.parametrize("name", TOOLS)
def test_exif_rotated_jpeg_is_used_upright(name):
    """A phone's portrait: pixels stored sideways with orientation 6 (rotate 90 degrees clockwise to view).
    The output matches the upright photo's; a lost rotation would change the shape and the subject."""
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = photo(name).transpose(Image.Transpose.ROTATE_90)  # counter-clockwise: tag 6 turns it back
    outs = run(name, encode(sideways, "JPEG", quality=95, exif=exif), "phone.jpg")
    assert "EXIF orientation 6 applied" in outs[0].record["input"]["notes"]
    same_result(outs, name, tolerance=6)


@pytest.mark.parametrize("name", TOOLS)
def test_cmyk_jpeg_keeps_its_colours(name):
    outs = run(name, encode(photo(name).convert("CMYK"), "JPEG", quality=95), "print.jpg")
    assert outs[0].record["input"]["mode"] == "CMYK" and "CMYK converted to RGB" in outs[0].record["input"]["notes"]
    same_result(outs, name, tolerance=10)


@pytest.mark.parametrize("name", TOOLS)
def test_palette_png(name):
    outs = run(name, encode(quantized(name), "PNG"), "palette.png")
    assert outs[0].record["input"]["mode"] == "P"
    same_result(outs, name, tolerance=0.5, source="quantized")  # as its colours in RGB


@pytest.mark.parametrize("name", TOOLS)
def test_animated_gif_uses_its_first_frame(name):
    frames = [quantized(name), Image.new("RGB", photo(name).size, (20, 160, 40)).quantize(8)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=200, loop=0)
    outs = run(name, data, "anim.gif")
    assert "animated GIF with 2 frames: the first frame is used" in outs[0].record["input"]["notes"]
    same_result(outs, name, tolerance=0.5, source="quantized")  # the photo, not the green second frame


@pytest.mark.parametrize("name", TOOLS)
def test_16_bit_png_is_scaled_not_clipped(name):
    """16-bit greyscale: scaled to 8 bits, so the output is the 8-bit grey photo's. Clipped instead
    (Pillow's plain convert), every pixel over 255 of 65535 would be white."""
    grey = np.asarray(photo(name).convert("L")).astype(np.uint16) * 257  # 0..255 -> 0..65535
    data = encode(Image.fromarray(grey), "PNG")
    assert Image.open(io.BytesIO(data)).mode in ("I;16", "I")  # a 16-bit PNG
    outs = run(name, data, "scan16.png")
    assert "16-bit greyscale scaled to 8 bits" in outs[0].record["input"]["notes"]
    same_result(outs, name, tolerance=0.5, source="grey")


@pytest.mark.parametrize("name", TOOLS)
def test_flat_grey_has_no_subject(name):
    """Nothing to find: the face tools refuse with their face message, product with its no-product
    message; the others give a flat result of the frame's size."""
    data = encode(Image.new("RGB", (400, 300), (128, 128, 128)), "PNG")
    if name in FACE_TOOLS:
        with pytest.raises(ValueError, match="no face found"):
            run(name, data, "grey.png")
        return
    if name == "product":
        with pytest.raises(ValueError, match="no product found"):
            run(name, data, "grey.png")
        return
    outs = run(name, data, "grey.png")
    for o, b in zip(outs, baseline(name)):
        assert o.image.size == ((400, 300) if name in SAME_SIZE else b.image.size)
