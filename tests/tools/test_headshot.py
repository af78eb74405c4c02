"""The headshot tool on skimage's astronaut (one face) and on photos that cannot make a headshot
(a cat, a tiny face, a blurred, a dark and a two-face photo); framing measured on the output."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from designerbox.jobs.tool import run_tool
from designerbox.store.png_metadata import read_record
from designerbox.tools.headshot import HeadshotOptions, run
from designerbox.tools.portrait import PortraitError, detect_faces, find_eyes, find_face
from designerbox.tools.registry import get_tool


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


def test_astronaut_framed_levelled_and_on_each_look(astronaut):
    opts = get_tool("headshot").resolve({"looks": ["studio-grey", "gradient", "brand", "office"]}, preset="linkedin")
    outs = run(Image.fromarray(astronaut), opts)
    assert [o.name for o in outs] == ["400x400-studio-grey", "400x400-gradient", "400x400-brand", "400x400-office"]
    for o in outs:
        assert o.image.size == (400, 400) and o.image.mode == "RGB"
    d = outs[0].details
    assert d["eyes"] is not None and d["framing"]["rotated"] == pytest.approx(d["roll"], abs=0.01)
    # the face found again in the output: centred, eyes on the eye line and level, the asked size
    out = np.asarray(outs[0].image)
    (box,) = detect_faces(out)
    cx = (box[0] + box[2]) / 2
    assert abs(cx - 200) < 16
    eyes = find_eyes(out, box)
    assert eyes is not None
    (lx, ly), (rx, ry) = eyes
    assert abs((ly + ry) / 2 - 0.40 * 400) < 0.05 * 400
    assert abs(np.degrees(np.arctan2(ry - ly, rx - lx))) < 2.0
    assert 0.22 < (box[3] - box[1]) / 400 < 0.34
    # the backdrop at the top corners is the look's, not the photo's
    corners = {o.details["look"]: np.asarray(o.image)[4, 4].astype(int) for o in outs}
    assert abs(corners["brand"] - [0x1F, 0x4E, 0x79]).max() < 25
    assert corners["studio-grey"].std() < 6 and corners["gradient"].min() > 200
    assert abs(corners["office"] - corners["studio-grey"]).max() > 20
    # the person stays the same across looks; only the backdrop changes
    centre = [np.asarray(o.image)[150:250, 160:240].astype(int) for o in outs]
    assert all(abs(c - centre[0]).mean() < 2 for c in centre)


def test_a_tilted_head_is_levelled(astronaut):
    M = cv2.getRotationMatrix2D((256, 256), -9, 1.0)  # the eyes tilt about 12 degrees (3 of them the photo's own)
    tilted = cv2.warpAffine(astronaut, M, (512, 512), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    face, found = find_face(tilted)
    assert found["roll"] > 9
    o = run(Image.fromarray(tilted), HeadshotOptions(width=400, height=400))[0]
    out = np.asarray(o.image)
    (box,) = detect_faces(out)
    (lx, ly), (rx, ry) = find_eyes(out, box)
    assert abs(np.degrees(np.arctan2(ry - ly, rx - lx))) < 2.5
    unlevelled = run(Image.fromarray(tilted), HeadshotOptions(width=400, height=400, level=False))[0]
    assert unlevelled.details["framing"]["rotated"] == 0


def test_tone_brings_a_dim_face_up(astronaut):
    dim = (astronaut.astype(np.float32) * 0.5).astype(np.uint8)
    o = run(Image.fromarray(dim), HeadshotOptions(width=400, height=400))[0]
    before = o.details["tone"]["face_median_l"]
    (box,) = detect_faces(np.asarray(o.image))
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    face = np.asarray(o.image)[y0 + h // 4:y1 - h // 8, x0 + w // 5:x1 - w // 5]
    after = np.median(cv2.cvtColor(face, cv2.COLOR_RGB2LAB)[..., 0]) / 2.55
    assert before < 50 and after > before + 8
    flat = run(Image.fromarray(dim), HeadshotOptions(width=400, height=400, tone=False))[0]
    assert flat.details["tone"] == {}


def _two_faces(a):
    return np.hstack([a, a[:, ::-1]])


@pytest.mark.parametrize("case,problem,message", [
    ("chelsea", "no_face", "no face found"),
    ("tiny", "face_too_small", r"the face is too small: \d+x\d+ px, a headshot needs at least 64 px"),
    ("blurred", "too_blurry", "too blurry: the face's sharpness"),
    ("dark", "too_dark", "too dark: the face's mean brightness is"),
    ("two", "several_faces", "2 faces found, at .* and .*: a headshot is of one person; crop the photo"),
])
def test_photos_that_cannot_make_a_headshot(astronaut, case, problem, message):
    image = {"chelsea": lambda: data.chelsea(),
             "tiny": lambda: cv2.resize(astronaut, (170, 170), interpolation=cv2.INTER_AREA),
             "blurred": lambda: cv2.GaussianBlur(astronaut, (0, 0), 3),
             "dark": lambda: (astronaut * 0.15).astype(np.uint8),
             "two": lambda: _two_faces(astronaut)}[case]()
    with pytest.raises(PortraitError, match=message) as err:
        run(Image.fromarray(image), HeadshotOptions(width=256, height=256))
    assert err.value.problem == problem


def test_options_name_the_valid_choices():
    with pytest.raises(ValueError, match="scene look needs scene_prompt"):
        HeadshotOptions(looks=["scene"])
    with pytest.raises(ValueError, match="'studio-grey', 'gradient', 'brand', 'office' or 'scene'"):
        HeadshotOptions(looks="studio-grey,beach")
    with pytest.raises(ValueError, match="brand_colour must look like #RRGGBB"):
        HeadshotOptions(brand_colour="navy")


def test_presets_through_run_tool_into_the_gallery(tmp_path, studio, astronaut):
    path = tmp_path / "astronaut.jpg"
    Image.fromarray(astronaut).save(path, quality=95)
    (o,) = run_tool("headshot", [path], preset="portrait", studio=studio)
    assert o.name == "portrait" and o.image.size == (1080, 1350)
    assert o.record["tool"]["name"] == "headshot" and o.record["details"]["look"] == "studio-grey"
    assert read_record(studio.gallery.file(studio.gallery.get(o.id)))["details"]["face_box"] == o.record["details"]["face_box"]


def test_upscale_and_scene_use_the_studio_models(tmp_path, studio, home, astronaut):
    """x4 super-resolution through an installed (tiny, random-weight) RDN; the scene drawn by the tiny model."""
    import json

    from safetensors.torch import save_file

    from designerbox.models.esrgan import RDN
    from designerbox.training.model_folder import update_manifest_files

    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut[:300, 100:400]).save(path)
    with pytest.raises(ValueError, match="no super-resolution model is installed"):
        run_tool("headshot", [path], {"width": 512, "height": 512, "upscale": 4}, studio=studio, save=False)
    (shrunk,) = run_tool("headshot", [path], {"width": 200, "height": 200, "upscale": 4}, studio=studio, save=False)
    assert "does not enlarge" in shrunk.record["details"]["upscaled"]["skipped"]
    folder = home / "models" / "tiny-x4"
    folder.mkdir(parents=True)
    config = dict(scale=4, C=1, D=1, G=4, G0=4, kernel_size=3, channels=3)
    save_file(RDN(**config).state_dict(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "manifest.json").write_text(json.dumps({
        "id": "tiny-x4", "name": "tiny x4", "family": "isr-rdn", "kind": "upscaler", "licence": "MIT", "scale": 4}))
    update_manifest_files(folder, ["model.safetensors", "config.json"])
    from designerbox.studio import Studio

    outs = run_tool("headshot", [path], {"width": 512, "height": 512, "upscale": 4, "looks": ["studio-grey", "scene"],
                                         "scene_prompt": "a bright office", "model": "tiny-test", "seed": 3},
                    studio=Studio(), save=False)
    assert [o.name for o in outs] == ["512x512-studio-grey", "512x512-scene"]
    up = outs[0].record["details"]["upscaled"]
    assert up["id"] == "tiny-x4" and up["factor"] == 4
    scene = outs[1].record["details"]["backdrop"]
    assert scene["model"] == "tiny-test" and scene["prompt"] == "a bright office" and scene["seed"] == 3


def test_the_person_mask_does_not_depend_on_the_photo_size(astronaut):
    """The same portrait at 512 and 2048 px gives the same mask (once the head's own GrabCut pass ran,
    brown hair no longer flipped to the background at some sizes because of the brown rocket)."""
    from designerbox.tools.portrait import person_mask

    small_face, _ = find_face(astronaut)
    small, _ = person_mask(astronaut, small_face)
    big_photo = np.asarray(Image.fromarray(astronaut).resize((2048, 2048), Image.LANCZOS))
    big_face, _ = find_face(big_photo)
    big, _ = person_mask(big_photo, big_face)
    big = cv2.resize(big, (512, 512), interpolation=cv2.INTER_AREA)
    a, b = small > 0.5, big > 0.5
    assert (a & b).sum() / (a | b).sum() > 0.97
    x0, y0, x1, y1 = small_face.box
    hair = (slice(y0 - 25, y0 + 5), slice(x0 + 5, x1 - 5))  # just above the face box: hair
    assert small[hair].mean() > 0.9 and big[hair].mean() > 0.9
