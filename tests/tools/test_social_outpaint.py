"""The social tool's fit="outpaint": the frame's missing part drawn by a diffusion model (the tiny
random-weight Stable Diffusion 1.5 folder of conftest.py's tiny_sd, added with `models add`), the
picture's own pixels kept.

The CLIP tokenizer comes from open-clip-torch's wheel (the clip_cache fixture of conftest.py, skipped
when pip cannot fetch it); the model is built once per session.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw
from tiny_checkpoints import add_model

from designerbox.jobs.tool import run_tool
from designerbox.tools.registry import tool_presets
from designerbox.tools.social import SocialOptions, render, run

STORY = (1080, 1920)


@pytest.fixture
def sd_studio(sd_home, tiny_sd, capsys):
    from designerbox.settings import Settings
    from designerbox.studio import Studio

    add_model([tiny_sd[0], "--id", "tiny-sd15"], capsys)
    return Studio(Settings.from_env())


def wide(w=96, h=48, box=(14, 10, 82, 38)) -> bytes:
    """A wide yellow-and-blue subject on a textured green-grey field, as PNG bytes."""
    rng = np.random.default_rng(1)
    im = Image.fromarray(np.clip(np.array([120.0, 135, 120]) + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.ellipse(box, fill=(250, 210, 20))
    d.rectangle((box[0] + 16, box[1] + 7, box[2] - 16, box[3] - 7), fill=(20, 60, 230))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def story(studio, seed=7, **options):
    (out,) = run_tool("social", [("wide.png", wide())], {"sizes": ["instagram-story"], "fit": "outpaint",
                                                        "seed": seed, "outpaint_side": 128, **options},
                          studio=studio, save=False)
    return out


def test_wide_image_is_outpainted_into_the_story(sd_studio):
    out = story(sd_studio)
    d = out.record["details"]
    # exact size, and what was drawn is recorded: model, seed, canvas, extend per side
    assert out.image.size == STORY and d["fit"] == "outpaint" and d["cut"] is None
    o = d["outpainted"]
    assert o["model"] == "tiny-sd15" and o["seed"] == 7 and o["model_hash"]
    left, top, right, bottom = o["extend"]
    # a wide picture grows up and down for 9:16 (left and right only by the canvas's rounding to 4 px)
    assert top > 10 and bottom > 10 and left + right < 4 and o["extend_image_px"][0] == o["extend_image_px"][2] == 0
    W, H = o["canvas"]
    assert H == 128 and W * 16 == pytest.approx(H * 9, rel=0.1) and W % 4 == 0  # the asked outpaint_side
    assert o["picture"][2] + left + right == W and o["picture"][3] + top + bottom == H
    assert out.record["options"]["fit"] == "outpaint"
    # the centre is the picture's own pixels, resized (Lanczos), away from the feathered seam
    image = Image.open(io.BytesIO(wide()))
    ax0, ay0, ax1, ay1 = o["kept"]["image_box"]
    px, py, px1, py1 = o["kept"]["frame_box"]
    assert ay0 == 0 and ay1 == image.height and 0 < py < py1 < STORY[1]  # the whole height is kept
    part = np.asarray(image.resize((px1 - px, py1 - py), Image.LANCZOS, box=(ax0, ay0, ax1, ay1),
                                   reducing_gap=3.0), np.int16)
    f = o["feather"]
    got = np.asarray(out.image, np.int16)[py + f:py1 - f, px:px1]
    assert np.abs(got - part[f:-f]).max() <= 1
    # the border is drawn: not the blurred, enlarged copy that fit="pad" would put there
    pad = np.asarray(render(image, tuple(d["window"]), *STORY), np.float32)
    border = np.asarray(out.image, np.float32)[:py - f]
    assert border.shape[0] > 200 and np.abs(border - pad[:py - f]).mean() > 10


def test_same_seed_same_pixels_other_seed_other_border(sd_studio):
    a, b, c = story(sd_studio, 3), story(sd_studio, 3), story(sd_studio, 4)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    assert c.record["details"]["outpainted"]["seed"] == 4


def test_a_frame_the_subject_fits_is_cropped_without_a_model_call(sd_studio):
    (out,) = run_tool("social", [("wide.png", wide())], {"sizes": ["youtube-thumbnail"], "fit": "outpaint"},
                      studio=sd_studio, save=False)
    assert out.record["details"]["fit"] == "crop" and out.record["details"]["outpainted"] is None


def test_no_stable_diffusion_model_is_a_clear_error(sd_home):
    from designerbox.settings import Settings
    from designerbox.studio import Studio

    studio = Studio(Settings.from_env())
    with pytest.raises(ValueError, match=r"needs an installed Stable Diffusion model.*dbx-base-v1"):
        story(studio)
    # a built-in 32x32 model named explicitly cannot draw a 9:16 canvas, and says so
    with pytest.raises(ValueError, match=r"cannot draw the \d+x\d+ canvas"):
        story(studio, model="dbx-base-v1")
    with pytest.raises(ValueError, match="run the social tool through run_tool"):
        run(Image.open(io.BytesIO(wide())), SocialOptions(sizes=["instagram-story"], fit="outpaint"))


def test_outpaint_preset_is_valid():
    assert tool_presets("social")["stories-outpaint"]["options"]["fit"] == "outpaint"
