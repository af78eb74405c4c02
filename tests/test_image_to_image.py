"""Image to image and inpainting (pipelines/sampling.draw) through the one request schema, on the tiny
pixel model: what is kept stays, what is asked to change changes, and bad inputs are named."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

import designerbox
from designerbox.jobs.generate import RequestError, request_from_record

FAST = dict(model="tiny-test", width=16, height=16, steps=6, sampler="euler", schedule="karras", cfg_scale=3.0,
            save=False)


def pixels(img) -> np.ndarray:
    return np.asarray(img).astype(int)


@pytest.fixture
def picture(tmp_path):
    """A 16x16 test card: red left half, blue right half, a white square in the middle."""
    a = np.zeros((16, 16, 3), np.uint8)
    a[:, :8] = (220, 30, 30)
    a[:, 8:] = (30, 30, 220)
    a[6:10, 6:10] = 255
    path = tmp_path / "card.png"
    Image.fromarray(a).save(path)
    return path, a


def test_low_strength_stays_near_the_picture(studio, picture):
    path, card = picture
    near = designerbox.generate("a cat", studio=studio, seed=1, init_image=str(path), strength=0.2, **FAST)[0]
    far = designerbox.generate("a cat", studio=studio, seed=1, init_image=str(path), strength=1.0, **FAST)[0]
    d_near = np.abs(pixels(near.image) - card).mean()
    d_far = np.abs(pixels(far.image) - card).mean()
    assert d_near < d_far and d_near < 40, (d_near, d_far)
    r = near.record["request"]
    assert r["strength"] == 0.2 and len(r["init_image"]["sha256"]) == 64 and r["init_image"]["size"] == [16, 16]


def test_inpainting_keeps_every_pixel_outside_the_mask(studio, picture, tmp_path):
    path, card = picture
    mask = np.zeros((16, 16), np.uint8)
    mask[:, 8:] = 255  # repaint the right half
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = designerbox.generate("a green leaf", studio=studio, seed=4, init_image=str(path),
                               mask_image=str(tmp_path / "mask.png"), **FAST)[0]
    got = pixels(out.image)
    assert np.array_equal(got[:, :8], card[:, :8].astype(int))  # kept exactly
    assert np.abs(got[:, 8:] - card[:, 8:]).mean() > 5          # redrawn
    assert out.record["request"]["strength"] == 1.0              # the default with a mask


def test_a_data_url_is_an_image_too(studio, picture):
    path, _ = picture
    url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    a = designerbox.generate("a cat", studio=studio, seed=2, init_image=url, strength=0.5, **FAST)[0]
    b = designerbox.generate("a cat", studio=studio, seed=2, init_image=str(path), strength=0.5, **FAST)[0]
    assert np.array_equal(pixels(a.image), pixels(b.image))


def test_the_output_size_follows_the_picture(studio, tmp_path):
    Image.new("RGB", (37, 21), (10, 200, 10)).save(tmp_path / "odd.png")
    opts = {k: v for k, v in FAST.items() if k not in ("width", "height")}
    out = designerbox.generate("a cat", studio=studio, seed=2, init_image=str(tmp_path / "odd.png"), strength=0.5,
                               upscaler="none", **opts)[0]
    assert out.image.size == (32, 16)  # rounded down to multiples of 8


def test_bad_image_inputs_are_named(studio, picture, tmp_path):
    path, _ = picture
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(RequestError, match="not an image"):
        designerbox.generate("a cat", studio=studio, init_image=str(tmp_path / "notes.txt"), **FAST)
    with pytest.raises(RequestError, match="does not decode"):
        designerbox.generate("a cat", studio=studio, init_image="data:image/png;base64,@@@", **FAST)
    with pytest.raises(Exception, match="need an init_image"):
        designerbox.generate("a cat", studio=studio, mask_image=str(path), **FAST)
    with pytest.raises(Exception, match="less than or equal to 1"):
        designerbox.generate("a cat", studio=studio, init_image=str(path), strength=1.5, **FAST)


def test_an_image_made_from_a_picture_says_so_when_reproduced(studio, picture):
    path, _ = picture
    out = designerbox.generate("a cat", studio=studio, seed=2, init_image=str(path), strength=0.5, **FAST)[0]
    with pytest.raises(RequestError, match="give it again with --init-image"):
        request_from_record(out.record)


def test_cli_inpaints(home, picture, tmp_path, capsys):
    import json

    from designerbox.cli import main

    path, card = picture
    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (0, 0, 16, 4))
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    (tmp_path / "top.png").write_bytes(buf.getvalue())
    code = main(["generate", "a sun", "--model", "tiny-test", "--size", "16x16", "--steps", "4", "--init-image",
                 str(path), "--mask", str(tmp_path / "top.png"), "-o", str(tmp_path / "out.png"), "--json",
                 "--no-gallery"])
    assert code == 0
    rec = json.loads(capsys.readouterr().out)[0]["record"]
    got = pixels(Image.open(tmp_path / "out.png"))
    assert np.array_equal(got[4:], card[4:].astype(int)) and rec["request"]["mask_image"]["size"] == [16, 16]


def test_a_gan_takes_no_picture(studio, picture):
    path, _ = picture
    with pytest.raises(RequestError, match="takes no init_image"):
        designerbox.generate("a cat", studio=studio, model="dbx-gan-v0", init_image=str(path), save=False)


def test_progress_carries_a_preview_of_each_step(studio):
    seen = []
    designerbox.generate("a cat", studio=studio, seed=1, progress=seen.append, **FAST)
    assert [s["i"] for s in seen] == list(range(FAST["steps"])) and seen[-1]["total"] == FAST["steps"]
    first, last = seen[0]["preview"], seen[-1]["preview"]
    assert first.shape == (1, 3, 16, 16) and 0 <= float(first.min()) and float(first.max()) <= 1
    assert not np.allclose(first.numpy(), last.numpy())  # the estimate sharpens over the steps


def test_latent_previews_are_the_published_linear_maps():
    import torch

    from designerbox.pipelines.stable_diffusion import LATENT_RGB, latent_preview

    for family in ("sd15", "sdxl"):
        one_hot = torch.zeros(1, 4, 2, 2)
        one_hot[0, 2] = 1.0  # the third latent channel alone
        rgb = latent_preview(one_hot, family)[0, :, 0, 0]
        assert torch.allclose(rgb, ((torch.tensor(LATENT_RGB[family][2]) + 1) / 2).clamp(0, 1))


def test_outpainting_extends_the_canvas_and_keeps_the_middle(studio, picture, tmp_path):
    _, card = picture
    Image.fromarray(card[:, 2:14]).save(tmp_path / "narrow.png")  # 12 wide: 16 with 2 pixels either side
    opts = {k: v for k, v in FAST.items() if k not in ("width", "height")}
    out = designerbox.generate("a cat", studio=studio, seed=5, init_image=str(tmp_path / "narrow.png"),
                               extend=(2, 0, 2, 0), upscaler="none", **opts)[0]
    got = pixels(out.image)
    assert got.shape == (16, 16, 3)
    # the picture minus the 4-pixel seam on each extended side is kept exactly
    assert np.array_equal(got[:, 6:10], card[:, 6:10].astype(int))
    assert np.abs(got[:, :2] - card[:, 2:3]).mean() > 1  # the new border is drawn, not the stretched edge
    assert list(out.record["request"]["extend"]) == [2, 0, 2, 0] and out.record["request"]["strength"] == 1.0
    assert out.record["request"]["mask_image"]["generated"] == "outpainting border"
    with pytest.raises(Exception, match="not all 0"):
        designerbox.generate("a cat", studio=studio, init_image=str(tmp_path / "narrow.png"), extend=(0, 0, 0, 0),
                             **opts)
    with pytest.raises(Exception, match="need an init_image"):
        designerbox.generate("a cat", studio=studio, extend=(8, 0, 0, 0), **opts)
