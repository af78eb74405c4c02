"""The product tool on synthetic composites (a known object drawn on a plain or textured background)
and on skimage's coffee photo."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from designerbox.tools.product import NoProductError, ProductOptions, cut_out, run
from designerbox.tools.registry import get_tool


def composite(textured: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(a 1200x900 photo of a red bottle-like object with lighting, its true mask)."""
    rng = np.random.default_rng(seed)
    H, W = 900, 1200
    if textured:  # a woven, noisy beige cloth
        xx = np.arange(W)[None, :, None]
        bg = np.array([190.0, 180, 165]) + rng.normal(0, 12, (H, W, 3)) + 20 * np.sin(xx / 9.0)
    else:
        bg = np.broadcast_to(np.array([200.0, 205, 210]), (H, W, 3)).copy()
    truth = np.zeros((H, W), np.uint8)
    cv2.ellipse(truth, (700, 430), (210, 290), 15, 0, 360, 1, -1)
    cv2.rectangle(truth, (640, 70), (760, 170), 1, -1)
    shade = np.linspace(0.75, 1.1, W)[None, :, None]
    obj = np.array([200.0, 40, 30]) * shade
    img = np.where(truth[..., None] == 1, np.broadcast_to(obj, (H, W, 3)), bg)
    return np.clip(img, 0, 255).astype(np.uint8), truth.astype(bool)


@pytest.mark.parametrize("textured", [False, True])
def test_cut_out_matches_the_known_object(textured):
    rgb, truth = composite(textured)
    alpha, info = cut_out(rgb)
    mask = alpha > 0.5
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.97, iou
    assert 0 < alpha.min() + 1e-6 and alpha.max() <= 1
    soft = ((alpha > 0.05) & (alpha < 0.95)).sum()
    assert 0 < soft < 0.05 * truth.sum()  # a feathered rim, not a blur


def test_marketplace_white_fill_and_shadow():
    rgb, _ = composite(textured=True)
    out = run(Image.fromarray(rgb), get_tool("product").resolve(preset="amazon"))[0]
    a = np.asarray(out.image)
    assert out.image.size == (2000, 2000) and out.image.mode == "RGB"
    b = 40  # the border band is pure #FFFFFF, shadow included
    border = np.concatenate([a[:b].reshape(-1, 3), a[-b:].reshape(-1, 3), a[:, :b].reshape(-1, 3), a[:, -b:].reshape(-1, 3)])
    assert (border == 255).all()
    # the product's box, measured on the pixels (no shadow): about 85% along the binding side
    flat = run(Image.fromarray(rgb), ProductOptions(shadow=0))[0].image
    ys, xs = np.nonzero((np.asarray(flat) < 250).any(axis=2))
    fill = max((xs.max() - xs.min() + 1) / 2000, (ys.max() - ys.min() + 1) / 2000)
    assert abs(fill - 0.85) < 0.015, fill
    assert abs((xs.max() + xs.min()) / 2 - 1000) < 10  # centred
    # the shadow darkens the floor just under the product, and only with shadow on
    below = out.details["product_box"][3] + 8
    cx = (out.details["product_box"][0] + out.details["product_box"][2]) // 2
    assert a[below, cx].max() < 250 and np.asarray(flat)[below, cx].min() == 255


@pytest.mark.parametrize("preset,size", [("amazon", (2000, 2000)), ("etsy", (2700, 2025)),
                                         ("shopify", (2048, 2048)), ("ebay", (1600, 1600))])
def test_presets_give_their_sizes(preset, size):
    rgb, _ = composite(False)
    small = cv2.resize(rgb, (400, 300), interpolation=cv2.INTER_AREA)
    out = run(Image.fromarray(small), get_tool("product").resolve(preset=preset))[0]
    assert out.image.size == size


def test_transparent_export_and_gradient():
    rgb, truth = composite(False)
    cut = run(Image.fromarray(rgb), get_tool("product").resolve(preset="cutout"))[0].image
    assert cut.mode == "RGBA"
    alpha = np.asarray(cut)[..., 3]
    assert alpha[0, 0] == 0 and alpha[1000, 1000] == 255
    # a cut-out fed back in keeps its own alpha (no second GrabCut)
    again = run(cut, ProductOptions(background="white", shadow=0))[0]
    assert again.details["method"] == "the input's own alpha"
    grad = np.asarray(run(Image.fromarray(rgb), ProductOptions(background="gradient"))[0].image).astype(int)
    assert grad[5, 1000].sum() > grad[-5, 1000].sum() + 60  # light above, darker floor


def test_a_plain_photo_has_no_product():
    with pytest.raises(NoProductError, match="no product found"):
        run(Image.new("RGB", (640, 480), (180, 190, 200)), ProductOptions())


def test_options_name_the_valid_choices():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="'white', 'gradient', 'transparent' or 'scene'"):
        ProductOptions(background="blue")
    with pytest.raises(ValidationError, match="#RRGGBB"):
        ProductOptions(gradient=("white", "#000000"))
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ProductOptions(colour="red")


def test_coffee_photo_sanity():
    """skimage's coffee: a red cup and saucer on a wooden table. The cut-out holds the cup (centre)
    and drops the table corners."""
    data = pytest.importorskip("skimage.data")
    rgb = data.coffee()
    alpha, info = cut_out(rgb)
    h, w = alpha.shape
    assert alpha[int(0.35 * h), int(0.48 * w)] > 0.9           # coffee in the cup
    assert alpha[int(0.6 * h), int(0.2 * w)] > 0.9             # the saucer
    for y, x in ((5, w - 5), (h - 5, w - 5), (5, 5)):           # table and dark corner
        assert alpha[y, x] < 0.1
    assert 0.3 < (alpha > 0.5).mean() < 0.7


def on_wood(colour: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(an 800x600 photo of a flat-coloured mug-like object, a ring handle on its left, on a wood-grained
    table, casting a soft shadow down and to the right; the object's true mask; the shadow's core where
    it falls on the table; the table seen through the handle)."""
    rng = np.random.default_rng(seed)
    H, W = 600, 800
    yy, xx = np.mgrid[:H, :W].astype(np.float32)
    u = 0.94 * yy + 0.34 * xx  # the grain runs across the board, a little tilted, warped by knots
    warp = cv2.GaussianBlur(rng.normal(0, 1, (H, W)).astype(np.float32), (0, 0), 25) * 120
    grain = 0.5 + 0.5 * np.sin((u + warp) / 5.0) * np.sin((u + 0.6 * warp) / 23.0)
    fine = cv2.GaussianBlur(rng.normal(0, 1, (H, W)).astype(np.float32), (0, 0), 1.0) * 0.6
    wood = np.array([170.0, 110, 65]) * (0.75 + 0.25 * grain + 0.08 * fine)[..., None]
    truth = np.zeros((H, W), np.uint8)
    cv2.ellipse(truth, (400, 300), (190, 150), 0, 0, 360, 1, -1)
    cv2.rectangle(truth, (330, 110), (470, 300), 1, -1)
    cv2.ellipse(truth, (215, 300), (75, 65), 0, 0, 360, 1, 22)  # the handle
    through = np.zeros((H, W), np.uint8)
    cv2.ellipse(through, (215, 300), (60, 50), 0, 0, 360, 1, -1)
    shadow = np.zeros((H, W), np.float32)
    cv2.ellipse(shadow, (450, 370), (200, 140), 0, 0, 360, 1.0, -1)
    shadow = cv2.GaussianBlur(shadow, (0, 0), 8) * (1 - truth)
    table = wood * (1 - 0.55 * shadow[..., None])  # the shadow darkens the wood, grain and colour kept
    obj = np.array(colour, np.float32) * (0.7 + 0.45 * (W - xx) / W)[..., None] + rng.normal(0, 2, (H, W, 1))
    img = np.where(truth[..., None] == 1, obj, table)
    return (np.clip(img, 0, 255).astype(np.uint8), truth.astype(bool), (shadow > 0.3) & (truth == 0),
            (through == 1) & (truth == 0))


@pytest.mark.parametrize("colour", [(40, 110, 90), (30, 30, 35), (200, 200, 205)], ids=["teal", "black", "white"])
def test_a_product_on_wood_drops_the_table_and_its_shadow(colour):
    """The grain and the shadow on it are the background: the cut-out is the object alone, the table
    seen through its handle left open."""
    rgb, truth, shadow, through = on_wood(colour)
    mask = cut_out(rgb)[0] > 0.5
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.95, iou
    assert mask[shadow].mean() < 0.15, mask[shadow].mean()  # the shadow's core stays out (its rim hugs the object)
    assert mask[cv2.erode(shadow.astype(np.uint8), np.ones((25, 25), np.uint8)) > 0].mean() < 0.02
    assert mask[through].mean() < 0.1, mask[through].mean()


def test_coffee_cut_out_leaves_the_table_under_the_saucer():
    """skimage's coffee (600x400), cut out from a box around the cup: the cup, the saucer's rim all round
    and the spoon are in; the shadowed wood under the saucer's left and right edges is not (it used to
    come out as two brown "legs" below the saucer)."""
    data = pytest.importorskip("skimage.data")
    alpha = cut_out(data.coffee())[0]
    for y, x in ((150, 290), (200, 95), (200, 462), (375, 300), (290, 365), (80, 410)):  # cup, rim left/right/
        # bottom, the spoon's bowl and its handle's end above the saucer (it mirrors the table)
        assert alpha[y, x] > 0.9, (y, x)
    for y, x in ((350, 110), (380, 150), (320, 95), (380, 440), (330, 470)):  # wood under the saucer's edges
        assert alpha[y, x] < 0.1, (y, x)
    assert 0.35 < (alpha > 0.5).mean() < 0.55


def test_reflection_below_the_product_fades_out():
    rgb, _ = composite(False)
    opts = dict(width=1000, height=1000, background="gradient", shadow=0.0)
    plain = run(Image.fromarray(rgb), ProductOptions(**opts))[0]
    glossy = run(Image.fromarray(rgb), ProductOptions(**opts, reflection=0.4, reflection_length=0.3))[0]
    x0, y0, x1, y1 = glossy.details["product_box"]
    rx0, ry0, rx1, ry1 = glossy.details["reflection_box"]
    assert (rx0, ry0, rx1) == (x0, y1, x1) and ry1 - ry0 == round(0.3 * (y1 - y0)) and ry1 <= 1000
    assert glossy.details["fill"] <= 0.85  # product and reflection both fit the frame
    red = lambda im, y: (np.asarray(im)[y, x0:x1, 0].astype(int) - np.asarray(im)[y, x0:x1, 1]).max()  # noqa: E731
    near, far = red(glossy.image, ry0 + 3), red(glossy.image, ry1 - 3)
    assert near > 40 and far < 0.2 * near  # the flipped red body right under the foot, faded out at the end
    assert red(plain.image, min(999, plain.details["product_box"][3] + 3)) < 10  # no reflection asked: none


def test_a_scene_photo_as_background(tmp_path):
    wall, table = (70, 110, 150), (120, 80, 50)
    scene = np.zeros((600, 800, 3), np.uint8)
    scene[:400], scene[400:] = wall, table
    path = tmp_path / "room.jpg"
    Image.fromarray(scene).save(path, quality=95)
    rgb, _ = composite(False)
    out = run(Image.fromarray(rgb), ProductOptions(width=900, height=600, background="scene", scene=str(path),
                                                   floor=0.85, reflection=0.2, fill=0.7))[0]
    a = np.asarray(out.image).astype(int)
    assert out.image.size == (900, 600) and out.details["scene"]["file"] == "room.jpg"
    assert np.abs(a[20, 20] - wall).max() < 8 and np.abs(a[-10, 20] - table).max() < 8  # covered, centred
    x0, y0, x1, y1 = out.details["product_box"]
    assert y1 == round(0.85 * 600) and 0 < y0 and abs((x0 + x1) / 2 - 450) <= 1  # stands on the floor line
    # the same scene as a data URL (how the REST API sends it): the same picture
    import base64

    url = "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()
    again = run(Image.fromarray(rgb), ProductOptions(width=900, height=600, background="scene", scene=url,
                                                     floor=0.85, reflection=0.2, fill=0.7))[0]
    assert np.array_equal(np.asarray(again.image), a) and again.details["scene"]["file"] == "scene"
    with pytest.raises(ValueError, match="scene is a data URL whose base64 payload does not decode"):
        run(Image.fromarray(rgb), ProductOptions(background="scene", scene="data:image/png;base64,@@@"))
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs one of scene"):
        ProductOptions(background="scene")
    with pytest.raises(ValidationError, match="scene is for background=scene"):
        ProductOptions(scene=str(path))
    with pytest.raises(ValueError, match="scene_prompt needs the studio"):
        run(Image.fromarray(rgb), ProductOptions(background="scene", scene_prompt="a marble table"))


def test_a_drawn_scene_through_the_studio(studio):
    """scene_prompt: the job gives the tool the studio's generation path (here the tiny test model)."""
    from designerbox.jobs.tool import run_tool

    rgb, _ = composite(False)
    small = Image.fromarray(cv2.resize(rgb, (400, 300), interpolation=cv2.INTER_AREA))
    (o,) = run_tool("product", [("bottle.png", _png(small))],
                    {"width": 640, "height": 480, "background": "scene", "scene_prompt": "a marble kitchen counter",
                     "model": "tiny-test", "seed": 5, "fill": 0.6}, studio=studio, save=False)
    scene = o.record["details"]["scene"]
    assert scene["prompt"] == "a marble kitchen counter" and scene["model"] == "tiny-test" and scene["seed"] == 5
    assert o.image.size == (640, 480) and scene["size"] == [640, 480]  # drawn at the frame's size
    x0, y0, x1, y1 = o.record["details"]["product_box"]
    assert y1 == round(0.86 * 480)


def _png(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
