"""Safe image loading: every awkward input is built here with Pillow, then loaded."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from designerbox.tools.image_input import ImageInputError, load_image


def _bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _marked(w=60, h=40) -> Image.Image:
    """Red on the left third, blue elsewhere: orientation shows where the red went."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, :] = (0, 0, 255)
    a[:, : w // 3] = (255, 0, 0)
    return Image.fromarray(a)


def test_exif_orientation_is_applied():
    im = _marked()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    loaded = load_image(_bytes(im, "JPEG", exif=exif, quality=95), name="phone.jpg")
    assert loaded.image.size == (40, 60)
    a = np.asarray(loaded.image).astype(int)
    assert a[5, 20, 0] > 200 and a[5, 20, 2] < 60      # red now on top
    assert a[-5, 20, 2] > 200 and a[-5, 20, 0] < 60    # blue below
    assert any("orientation 6" in n for n in loaded.notes)


def test_cmyk_becomes_rgb_with_the_right_colours():
    rgb = _marked()
    loaded = load_image(_bytes(rgb.convert("CMYK"), "JPEG", quality=95), name="print.jpg")
    assert loaded.image.mode == "RGB"
    diff = np.abs(np.asarray(loaded.image).astype(int) - np.asarray(rgb).astype(int))
    assert np.median(diff) < 6
    assert loaded.source["mode"] == "CMYK" and any("CMYK" in n for n in loaded.notes)


def test_palette_with_transparency_becomes_rgba_and_without_rgb():
    pal = _marked().quantize(4)
    pal.info["transparency"] = 0
    loaded = load_image(_bytes(pal, "PNG", transparency=0), name="pal.png")
    assert loaded.image.mode == "RGBA"
    assert 0 in np.asarray(loaded.image)[..., 3]
    plain = load_image(_bytes(_marked().quantize(4), "GIF"), name="pal.gif")
    assert plain.image.mode == "RGB"
    assert tuple(np.asarray(plain.image)[5, 5]) == (255, 0, 0)


def test_16_bit_greyscale_is_scaled_not_clipped():
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    loaded = load_image(_bytes(Image.fromarray(ramp), "PNG"), name="depth.png")
    a = np.asarray(loaded.image)
    assert loaded.image.mode == "RGB"
    assert a[0, 0, 0] == 0 and a[0, -1, 0] == 255
    assert 120 <= a[0, 32, 0] <= 135    # mid-grey stays mid-grey (clipping would make it 255)
    assert any("16-bit" in n for n in loaded.notes)


def test_la_keeps_its_alpha():
    la = Image.merge("LA", (Image.new("L", (10, 10), 200), Image.linear_gradient("L").resize((10, 10))))
    loaded = load_image(_bytes(la, "PNG"), name="la.png")
    assert loaded.image.mode == "RGBA"
    a = np.asarray(loaded.image)
    assert a[0, 0, 0] == 200 and a[0, 0, 3] < 20 and a[-1, 0, 3] > 230


def test_animated_gif_gives_the_first_frame_with_a_note():
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    loaded = load_image(buf.getvalue(), name="anim.gif")
    assert tuple(np.asarray(loaded.image)[10, 10]) == (255, 0, 0)
    assert any("3 frames: the first frame" in n for n in loaded.notes)


def test_truncated_jpeg_names_the_problem():
    data = _bytes(Image.effect_noise((256, 256), 60).convert("RGB"), "JPEG")
    with pytest.raises(ImageInputError, match=r"cut\.jpg is a truncated or damaged JPEG file"):
        load_image(data[: len(data) // 2], name="cut.jpg")


def test_not_an_image_empty_missing_and_folder(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not pixels")
    with pytest.raises(ImageInputError, match=r"notes\.txt is not an image.*supported formats: PNG, JPEG"):
        load_image(text)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageInputError, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ImageInputError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageInputError, match="is a folder"):
        load_image(tmp_path)


def test_50_megapixel_jpeg_is_downscaled_or_refused(tmp_path):
    w, h = 8660, 5774  # 50.0 MP
    big = Image.linear_gradient("L").resize((w, h), Image.NEAREST).convert("RGB")
    path = tmp_path / "huge.jpg"
    big.save(path, quality=70)
    del big
    loaded = load_image(path, max_pixels=12_000_000)
    assert loaded.image.width * loaded.image.height <= 12_000_000
    assert abs(loaded.image.width / loaded.image.height - w / h) < 0.01
    assert loaded.source["size"] == [w, h] and any("downscaled from 8660x5774" in n for n in loaded.notes)
    with pytest.raises(ImageInputError, match=r"8660x5774 \(50\.0 megapixels\), over the limit of 12"):
        load_image(path, max_pixels=12_000_000, on_large="refuse")
    with pytest.raises(ImageInputError, match="over the limit of 40 megapixels"):
        load_image(path, max_input_pixels=40_000_000)


def test_huge_png_is_refused_from_its_header_before_decoding(tmp_path):
    """A 400-megapixel PNG that compresses to a few hundred KB (a decompression bomb) is refused
    without decoding it: loading it would take 1.2 GB."""
    path = tmp_path / "bomb.png"
    Image.new("L", (20000, 20000)).save(path, optimize=False)
    assert path.stat().st_size < 2_000_000
    with pytest.raises(ImageInputError, match=r"bomb.png is too large \(400\.0 megapixels\), over the limit of 100"):
        load_image(path)


def test_memory_stays_bounded_on_a_50_megapixel_jpeg(tmp_path):
    """Decoding at a reduced DCT scale: a 50 MP JPEG loaded to a 3 MP working size raises peak
    memory by far less than its full decode (150 MB) would."""
    import subprocess
    import sys

    path = tmp_path / "huge.jpg"
    Image.linear_gradient("L").resize((8660, 5774), Image.NEAREST).save(path, quality=70)
    code = ("import resource, sys; from designerbox.tools.image_input import load_image;"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
            f"im = load_image({str(path)!r}, max_pixels=3_000_000).image;"
            "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
            "print(im.size, (after - before) // 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    grown_mb = int(out[-1])
    assert grown_mb < 60, f"peak memory grew by {grown_mb} MB"
