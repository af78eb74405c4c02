"""The social tool: every crop keeps the subject; sizes exactly as the presets say."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from designerbox import presets
from designerbox.tools.registry import get_tool
from designerbox.tools.social import DEFAULT_SIZES, SocialOptions, run, window


def off_centre(w=1600, h=1200, box=(1050, 320, 1350, 760)) -> tuple[Image.Image, tuple]:
    """A textured green-grey field with a yellow-and-blue subject off to the right."""
    rng = np.random.default_rng(1)
    field = np.clip(np.array([120.0, 135, 120]) + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(field)
    d = ImageDraw.Draw(im)
    x0, y0, x1, y1 = box
    d.ellipse(box, fill=(250, 210, 20))
    d.rectangle((x0 + 60, y0 + 120, x1 - 60, y1 - 120), fill=(20, 60, 230))
    return im, box


def test_every_crop_contains_the_subject_and_has_the_exact_size():
    im, (x0, y0, x1, y1) = off_centre()
    outs = run(im, SocialOptions())
    assert [o.name for o in outs] == list(DEFAULT_SIZES)
    for o in outs:
        p = presets.get_size(o.name)
        assert o.image.size == (p.width, p.height)
        wx0, wy0, wx1, wy1 = o.details["window"]
        assert wx0 <= x0 and wy0 <= y0 and wx1 >= x1 and wy1 >= y1, (o.name, o.details)
        assert o.details["fit"] in ("crop", "pad") and o.details["cut"] is None
        # and the pixels agree: the subject's yellow shows in the output
        yellow = (np.asarray(o.image)[..., 0] > 200) & (np.asarray(o.image)[..., 2] < 90)
        assert yellow.any()


def test_wide_banner_of_a_tall_subject_pads_instead_of_cutting():
    im, box = off_centre(1000, 1000, (400, 100, 600, 900))  # a tall subject, 80% of the height
    (out,) = run(im, SocialOptions(sizes=["linkedin-banner"]))
    assert out.details["fit"] == "pad" and out.image.size == (1584, 396)
    win = out.details["window"]
    assert win[1] <= box[1] and win[3] >= box[3]
    crop = run(im, SocialOptions(sizes=["linkedin-banner"], fit="crop"))[0]
    assert crop.details["fit"] == "crop" and crop.details["cut"]


def test_window_holds_the_subject_near_the_edge():
    win, fits = window((1000, 500), 1.0, (900, 100, 990, 200), (945, 150), 0.0)
    assert fits and win == (500, 0, 1000, 500)


def test_face_is_kept_in_every_frame():
    data = pytest.importorskip("skimage.data")
    outs = run(Image.fromarray(data.astronaut()), SocialOptions())
    face = outs[0].details["faces"]
    assert len(face) == 1
    fx0, fy0, fx1, fy1 = face[0]
    for o in outs:
        wx0, wy0, wx1, wy1 = o.details["window"]
        assert wx0 <= fx0 and wy0 <= fy0 and wx1 >= fx1 and wy1 >= fy1, o.name


def test_sizes_are_checked_and_split():
    from pydantic import ValidationError

    assert SocialOptions(sizes="x-post, tiktok").sizes == ["x-post", "tiktok"]
    with pytest.raises(ValidationError, match=r"unknown size 'myspace'; valid sizes: square, instagram-post"):
        SocialOptions(sizes=["myspace"])
    groups = get_tool("social").presets()
    assert set(groups["all"]["options"]["sizes"]) == set(DEFAULT_SIZES)
