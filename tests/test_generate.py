"""Text to image end to end on the tiny random-weight model: API, records, PNG metadata, gallery."""

import numpy as np
import pytest
from PIL import Image

import designerbox
from designerbox.jobs.generate import RequestError, request_from_record
from designerbox.presets import UnknownPresetError
from designerbox.registry.discovery import UnknownModelError
from designerbox.store.png_metadata import read_parameters, read_record

FAST = dict(model="tiny-test", steps=3)


def pixels(img) -> np.ndarray:
    return np.asarray(img.convert("RGB")).astype(np.int16)


def test_python_api_returns_images_with_records(studio):
    images = designerbox.generate("a red apple", studio=studio, seed=7, batch_size=2, **FAST)
    assert len(images) == 2 and images[0].image.size == (16, 16)
    r = images[0].record
    assert r["request"]["prompt"] == "a red apple" and r["request"]["seed"] == 7
    assert [img.record["seed"] for img in images] == [7, 8]
    assert r["request"]["sampler"] == "dpmpp_2m" and r["request"]["schedule"] == "karras"
    assert r["model"]["id"] == "tiny-test" and len(r["model"]["sha256"]) == 64
    assert {"designerbox", "torch", "diffusers", "python"} <= set(r["versions"])
    assert not np.array_equal(pixels(images[0].image), pixels(images[1].image))
    # a random-weight network still gives an image with spread, not a constant
    assert pixels(images[0].image).std() > 1


def test_recorded_output_slice_of_the_tiny_model(studio):
    """diffusers-style regression: a 3x3 corner of a fixed-seed image from the seeded tiny model."""
    img = designerbox.generate("a cat face", studio=studio, seed=0, save=False, sampler="euler",
                               schedule="karras", cfg_scale=4.0, **FAST)[0].image
    corner = pixels(img)[:3, :3, 0]
    again = designerbox.generate("a cat face", studio=studio, seed=0, save=False, sampler="euler",
                                 schedule="karras", cfg_scale=4.0, **FAST)[0].image
    assert np.array_equal(corner, pixels(again)[:3, :3, 0])
    other = designerbox.generate("a cat face", studio=studio, seed=1, save=False, sampler="euler",
                                 schedule="karras", cfg_scale=4.0, **FAST)[0].image
    assert not np.array_equal(pixels(img), pixels(other))


@pytest.mark.parametrize("sampler", ["euler", "euler_a", "heun", "dpmpp_2m", "dpmpp_2m_sde", "ddim"])
@pytest.mark.parametrize("schedule", ["karras", "exponential", "simple"])
def test_every_sampler_and_schedule_draws(studio, sampler, schedule):
    img = designerbox.generate("a rocket", studio=studio, seed=3, save=False, sampler=sampler, schedule=schedule,
                               **FAST)[0]
    a = pixels(img.image)
    assert a.shape == (16, 16, 3) and a.std() > 1
    assert img.record["request"]["sampler"] == sampler and img.record["request"]["schedule"] == schedule


def test_png_carries_a1111_parameters_and_full_record(studio, tmp_path):
    img = designerbox.generate("a yellow star", studio=studio, seed=11, negative_prompt="blurry", style="3d",
                               cfg_scale=5.5, **FAST)[0]
    path = studio.export([img], tmp_path / "star.png")[0]
    params = read_parameters(path)
    lines = params.splitlines()
    assert lines[0] == "a yellow star"
    assert lines[1] == "Negative prompt: blurry"
    for field in ("Steps: 3", "Sampler: DPM++ 2M", "Schedule type: Karras", "CFG scale: 5.5", "Seed: 11",
                  "Size: 16x16", f"Model hash: {img.record['model']['hash']}", "Model: tiny-test", "Style: 3d"):
        assert field in lines[2]
    record = read_record(path)
    assert record == img.record
    assert record["conditioning"]["prompt"] == "a yellow star, 3d"
    assert "blurry" in record["conditioning"]["negative_prompt"] and "flat" in record["conditioning"]["negative_prompt"]


def test_same_request_and_seed_give_identical_pixels(studio, tmp_path):
    first = designerbox.generate("a 3d heart", studio=studio, seed=42, batch_size=3, sampler="euler_a", **FAST)
    path = studio.export(first, tmp_path)[2]
    request, index = request_from_record(read_record(path))
    assert index == 2
    again = studio.generate(request, save=False)[index]
    assert np.array_equal(pixels(Image.open(path)), pixels(again.image))


def test_platform_size_beyond_native_is_resized_and_recorded(studio):
    img = designerbox.generate("a rocket", studio=studio, seed=1, size_preset="x-post", save=False, **FAST)[0]
    assert img.image.size == (1600, 900)
    assert img.record["native_size"] == [16, 16] and img.record["output_size"] == [1600, 900]
    assert "drawn at 16x16, resized to 900x900" in img.record["resized"]
    assert "padded" in img.record["resized"]
    square = designerbox.generate("a rocket", studio=studio, seed=1, width=64, height=64, save=False, **FAST)[0]
    assert square.image.size == (64, 64) and "resized to 64x64" in square.record["resized"]


def test_native_size_is_not_resized(studio):
    img = designerbox.generate("a rocket", studio=studio, seed=1, width=16, height=16, save=False, **FAST)[0]
    assert img.record["resized"] is None and img.image.size == (16, 16)


@pytest.mark.parametrize("options, error, fragment", [
    ({"model": "nope"}, UnknownModelError, "installed models: .*tiny-test"),
    ({"style": "baroque"}, UnknownPresetError, "valid styles"),
    ({"size_preset": "myspace"}, UnknownPresetError, "valid size presets"),
    ({"width": 8, "height": 8}, ValueError, "greater than or equal to 16"),
])
def test_bad_requests_fail_with_the_valid_choices(studio, options, error, fragment):
    opts = dict(FAST) | options
    with pytest.raises(error, match=fragment):
        designerbox.generate("x", studio=studio, **opts)


def test_size_below_the_models_range(studio, home):
    import json

    manifest = home / "models" / "tiny-test" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["min_size"] = 32
    manifest.write_text(json.dumps(data))
    from designerbox.studio import Studio

    with pytest.raises(RequestError, match="at least 32x32; asked for 16x16"):
        designerbox.generate("x", studio=Studio(), width=16, height=16, **FAST)


def test_gallery_records_every_image(studio):
    images = designerbox.generate("a cat face", studio=studio, seed=5, batch_size=2, **FAST)
    rows = studio.gallery.list()
    assert {r.id for r in rows} == {img.id for img in images}
    row = studio.gallery.get(images[0].id[:8])
    assert row.prompt == "a cat face" and row.seed == 5 and row.model_id == "tiny-test"
    assert studio.gallery.file(row).read_bytes() == images[0].png
    assert studio.gallery.list(search="cat")[0].prompt == "a cat face"
    assert studio.gallery.list(search="dog") == []
    assert studio.gallery.list(model="other") == []


def test_progress_reports_every_step(studio):
    seen = []
    designerbox.generate("a rocket", studio=studio, seed=1, save=False, progress=seen.append, **FAST)
    assert [s["i"] for s in seen] == [0, 1, 2] and all(s["total"] == 3 for s in seen)
    assert seen[-1]["denoised"].shape == (1, 3, 16, 16)


def test_cascade_through_an_upscaler_is_recorded(studio, home):
    """A tiny random-weight x4 upscaler installed as a user model: 16 -> 64 -> 256 -> resized to 200."""
    import json

    from safetensors.torch import save_file

    from designerbox.models.esrgan import RDN
    from designerbox.training.model_folder import update_manifest_files

    folder = home / "models" / "tiny-x4"
    folder.mkdir(parents=True)
    config = dict(scale=4, C=1, D=1, G=4, G0=4, kernel_size=3, channels=3)
    save_file(RDN(**config).state_dict(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "manifest.json").write_text(json.dumps({
        "id": "tiny-x4", "name": "tiny x4", "family": "isr-rdn", "kind": "upscaler", "licence": "MIT", "scale": 4}))
    update_manifest_files(folder, ["model.safetensors", "config.json"])
    from designerbox.studio import Studio

    studio = Studio()
    img = designerbox.generate("a rocket", studio=studio, seed=1, width=200, height=200, save=False, **FAST)[0]
    assert img.image.size == (200, 200)
    assert img.record["upscaler"]["id"] == "tiny-x4" and img.record["request"]["upscaler"] == "tiny-x4"
    assert "upscaled to 64x64 (tiny-x4), upscaled to 256x256 (tiny-x4), resized to 200x200" in img.record["resized"]
    plain = designerbox.generate("a rocket", studio=studio, seed=1, width=200, height=200, save=False,
                                 upscaler="none", **FAST)[0]
    assert plain.record["upscaler"] is None and "upscaled" not in plain.record["resized"]
    with pytest.raises(RequestError, match="not an upscaler; installed upscalers: tiny-x4"):
        designerbox.generate("a rocket", studio=studio, upscaler="tiny-test", **FAST)
    with pytest.raises(UnknownModelError):
        designerbox.generate("a rocket", studio=studio, upscaler="esrgan-huge", **FAST)
