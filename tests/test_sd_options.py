"""Request options of the Stable Diffusion families on the tiny random-weight SD 1.5 checkpoint (tiny_sd of
conftest.py): LoRAs by an API field, outpainting to a platform size, clear errors when a
model cannot fit, CPU offload."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_checkpoints import NEGATIVE, PROMPT, SIZE
from tiny_checkpoints import add_model as _add
from tiny_checkpoints import write_lora as _write_lora


def _studio():
    from designerbox.settings import Settings
    from designerbox.studio import Studio

    return Studio(Settings.from_env())


def _request(**kw):
    from designerbox.jobs.schema import GenerationRequest

    base = dict(prompt=PROMPT, model="tiny-folder", steps=2, sampler="euler", schedule="karras", cfg_scale=5.0,
                width=SIZE, height=SIZE, seed=3)
    return GenerationRequest(**(base | kw))


# --- LoRA by the request's `loras` field ------------------------------------------------------------------

def test_the_loras_field_equals_the_prompt_tag(tiny_sd, sd_home, capsys):
    from designerbox.jobs.generate import RequestError

    _add([tiny_sd[0], "--id", "tiny-folder"], capsys)
    _write_lora(sd_home / "loras" / "style.safetensors")
    _write_lora(sd_home / "loras" / "grain.safetensors", seed=1)
    studio = _studio()
    plain = studio.generate(_request(), save=False)[0]
    tag = studio.generate(_request(prompt=f"{PROMPT} <lora:style:0.8> <lora:grain:-0.5>"), save=False)[0]
    field = studio.generate(_request(loras=[{"name": "style", "weight": 0.8}, {"name": "grain", "weight": -0.5}]),
                            save=False)[0]
    mixed = studio.generate(_request(prompt=f"{PROMPT} <lora:style:0.8>", loras=[{"name": "grain", "weight": -0.5}]),
                            save=False)[0]
    a, b, c, d = (np.asarray(g.image).astype(int) for g in (plain, tag, field, mixed))
    assert np.abs(b - a).max() > 0
    assert np.array_equal(b, c) and np.array_equal(b, d)
    assert field.record["loras"] == tag.record["loras"] == mixed.record["loras"]
    assert [(x["name"], x["strength"]) for x in field.record["loras"]] == [("style", 0.8), ("grain", -0.5)]
    assert field.record["request"]["loras"] == [{"name": "style", "weight": 0.8}, {"name": "grain", "weight": -0.5}]
    assert field.record["conditioning"]["prompt"] == PROMPT
    again = studio.generate(_request(), save=False)[0]  # taken out for the next request
    assert np.array_equal(np.asarray(again.image).astype(int), a)
    # the record reproduces the image, LoRAs included
    from designerbox.jobs.generate import request_from_record

    req, _ = request_from_record(field.record)
    assert np.array_equal(np.asarray(studio.generate(req, save=False)[0].image).astype(int), c)
    with pytest.raises(RequestError, match="no LoRA named 'nope'.*grain, style"):
        studio.generate(_request(loras=[{"name": "nope"}]), save=False)


@pytest.mark.parametrize("lora, message", [
    ({"name": "../models/x"}, "is not a LoRA name"),
    ({"name": ".hidden"}, "is not a LoRA name"),
    ({"name": "a:b"}, "is not a LoRA name"),
    ({"name": "style", "weight": float("nan")}, "finite number"),
    ({"name": "style", "weight": 11}, "less than or equal to 10"),
    ({"name": "style", "strength": 1}, "Extra inputs"),
])
def test_the_loras_field_is_validated(lora, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        _request(loras=[lora])


def test_the_lora_cli_option(tiny_sd, sd_home, tmp_path, capsys):
    from designerbox.cli import main

    _add([tiny_sd[0], "--id", "tiny-folder"], capsys)
    _write_lora(sd_home / "loras" / "style.safetensors")
    args = ["--model", "tiny-folder", "--steps", "2", "--sampler", "euler", "--size", f"{SIZE}x{SIZE}", "--seed", "3",
            "--json", "--no-gallery"]
    assert main(["generate", PROMPT, "--lora", "style:0.8", "-o", str(tmp_path / "a"), *args]) == 0
    by_option = json.loads(capsys.readouterr().out)[0]
    assert main(["generate", f"{PROMPT} <lora:style:0.8>", "-o", str(tmp_path / "b"), *args]) == 0
    by_tag = json.loads(capsys.readouterr().out)[0]
    assert by_option["record"]["loras"] == by_tag["record"]["loras"]
    assert np.array_equal(np.asarray(Image.open(by_option["path"])), np.asarray(Image.open(by_tag["path"])))


# --- outpainting to a platform size ------------------------------------------------------------------------

def test_outpainting_reaches_a_platform_size(tiny_sd, sd_home, tmp_path, capsys):
    """A 32x32 picture outpainted to x-header (1500x500, 3:1): drawn on a 96x32 canvas (32 px of new
    border left and right, the picture kept in the middle), then resized to 1500x500."""
    from skimage import data

    from designerbox.cli import main

    _add([tiny_sd[0], "--id", "tiny-folder"], capsys)
    picture = Image.fromarray(data.astronaut()).resize((SIZE, SIZE), Image.LANCZOS)
    picture.save(tmp_path / "in.png")
    assert main(["generate", PROMPT, "--model", "tiny-folder", "--steps", "2", "--sampler", "euler", "--seed", "3",
                 "--init-image", str(tmp_path / "in.png"), "--outpaint-to", "x-header", "-o", str(tmp_path / "out"),
                 "--json", "--no-gallery", "--upscaler", "none"]) == 0
    out = json.loads(capsys.readouterr().out)[0]
    record, image = out["record"], Image.open(out["path"]).convert("RGB")
    assert image.size == (1500, 500) and record["output_size"] == [1500, 500]
    assert record["outpaint"] == {"to": "x-header", "from_size": [SIZE, SIZE], "scale": 1.0,
                                  "extend": [32, 0, 32, 0], "canvas": [96, 32]}
    assert record["native_size"] == [96, 32] and record["request"]["extend"] == [32, 0, 32, 0]
    assert record["request"]["outpaint_to"] == "x-header" and record["request"]["strength"] == 1.0
    assert "drawn at 96x32" in record["resized"]
    # back at the canvas size: the picture is kept in the middle (away from the redrawn 4-px seam), the
    # border is new
    canvas = np.asarray(image.resize((96, 32), Image.LANCZOS)).astype(int)
    middle = np.abs(canvas[4:-4, 32 + 4:64 - 4] - np.asarray(picture).astype(int)[4:-4, 4:-4]).mean()
    assert middle < 12, middle
    assert canvas[:, :28].std() > 1


@pytest.mark.parametrize("size, target, extend", [
    ((512, 512), (1500, 500), (512, 0, 512, 0)),      # 3:1 from a square: 1536x512
    ((512, 512), (1080, 1350), (0, 64, 0, 64)),       # 4:5: 512x640
    ((512, 512), (1200, 627), (224, 0, 224, 0)),      # 1.91:1, to the nearest multiple of 64: 960x512
    ((600, 400), (1080, 1920), (20, 344, 20, 344)),    # tall, a picture off the multiple: 640x1088
])
def test_outpaint_plan(size, target, extend):
    from designerbox.jobs.generate import outpaint_plan
    from designerbox.registry.manifest import ModelManifest

    m = ModelManifest(id="sd", name="sd", family="sd15", kind="diffusion", licence="x", native_size=(512, 512),
                      size_multiple=64, min_size=64, max_size=2048)
    assert outpaint_plan(size, target, m) == (1.0, extend)
    scale, ext = outpaint_plan((1024, 1024), (1584, 396), m)  # 4:1 from 1024: 4096 wide, scaled to 2048
    assert scale == 0.5 and ext == (768, 0, 768, 0)


def test_outpainting_errors(tiny_sd, sd_home, tmp_path, capsys):
    from pydantic import ValidationError

    from designerbox.jobs.generate import RequestError

    with pytest.raises(ValidationError, match="leave out extend"):
        _request(init_image="x.png", outpaint_to="x-header", extend=(0, 0, 8, 0))
    with pytest.raises(ValidationError, match="need an init_image"):
        _request(outpaint_to="x-header")
    _add([tiny_sd[0], "--id", "tiny-folder"], capsys)
    Image.new("RGB", (SIZE, SIZE), "red").save(tmp_path / "in.png")
    studio = _studio()
    with pytest.raises(RequestError, match="already has the aspect"):
        studio.generate(_request(width=None, height=None, init_image=str(tmp_path / "in.png"), outpaint_to="square"),
                        save=False)
    with pytest.raises(ValueError, match="unknown size preset 'poster'.*x-header"):
        studio.generate(_request(width=None, height=None, init_image=str(tmp_path / "in.png"), outpaint_to="poster"),
                        save=False)


# --- a model that cannot fit ----------------------------------------------------------------------------------

def test_the_estimate_is_the_loaded_weights(tiny_sd, sd_home, capsys):
    """The estimate from the safetensors headers is what the loaded networks hold (within 1%: the
    text encoder's position_ids buffer is not in the file), in float16 on a GPU: half of it."""
    from designerbox.registry.cache import module_bytes
    from designerbox.registry.discovery import Registry
    from designerbox.registry.memory import estimate_bytes
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    _add([tiny_sd[0], "--id", "tiny-folder"], capsys)
    manifest = Registry(sd_home).get("tiny-folder")
    need = estimate_bytes(manifest, "cpu")
    loaded = module_bytes(load_stable_diffusion(manifest, "cpu"))
    assert abs(need - loaded) / loaded < 0.01, (need, loaded)
    assert estimate_bytes(manifest, "cuda") == need // 2


def test_a_model_over_the_budget_is_refused_before_loading(tiny_sd, sd_home, tmp_path, capsys, monkeypatch):
    from designerbox.cli import main
    from designerbox.registry.cache import ModelCache
    from designerbox.registry.memory import ModelTooLargeError

    _add([tiny_sd[0], "--id", "tiny-folder"], capsys)
    monkeypatch.setenv("DESIGNERBOX_CACHE_MB", "1")
    assert main(["generate", PROMPT, "--model", "tiny-folder", "--steps", "1", "--size", f"{SIZE}x{SIZE}",
                 "-o", str(tmp_path), "--no-gallery"]) != 0
    err = capsys.readouterr().err
    assert "model 'tiny-folder' needs about" in err and "budget of 1 MiB" in err
    assert "DESIGNERBOX_CACHE_MB" in err and "smaller size" in err
    studio = _studio()
    with pytest.raises(ModelTooLargeError):
        studio.generate(_request(), save=False)
    assert len(studio.cache) == 0
    # the cache refuses before calling the loader, and evicts older models before loading a new one
    loads = []
    cache = ModelCache(budget_bytes=100, size_of=lambda v: 60)
    with pytest.raises(ModelTooLargeError, match="needs about 0 MiB"):
        cache.get(("big", "cpu"), lambda: loads.append("big"), need=101)
    cache.get(("a", "cpu"), lambda: loads.append("a") or "a", need=60)
    cache.get(("b", "cpu"), lambda: ("a", "cpu") not in cache and loads.append("b") or "b", need=60)
    assert loads == ["a", "b"] and ("a", "cpu") not in cache  # a was gone before b loaded


def test_free_memory_is_checked():
    from designerbox.registry.memory import ModelTooLargeError, check_fits, free_bytes

    free = free_bytes("cpu")
    assert 0 < free < 2**50
    check_fits("m", 100 * 2**20, 4096 * 2**20, 200 * 2**20, "cpu")
    with pytest.raises(ModelTooLargeError, match=r"needs about 500 MiB .* only 200 MiB of RAM is free: .*smaller size"):
        check_fits("m", 500 * 2**20, 4096 * 2**20, 200 * 2**20, "cpu")
    with pytest.raises(ModelTooLargeError, match=r"only 200 MiB of GPU is free: .*float16.*DESIGNERBOX_OFFLOAD=model"):
        check_fits("m", 500 * 2**20, 4096 * 2**20, 200 * 2**20, "cuda")


# --- CPU offload (pipelines/offload.py) -----------------------------------------------------------------------

def test_offload_moves_one_network_at_a_time_and_keeps_the_image(tiny_sd, sd_home, capsys, monkeypatch):
    """On this CPU-only machine the execution and offload devices are both the CPU: the hooks run as on a
    GPU (each network made resident when it is called, the last one sent back), and the image is the same."""
    from designerbox.pipelines.stable_diffusion import sd_text_to_image
    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    _add([tiny_sd[0], "--id", "tiny-folder"], capsys)
    manifest = Registry(sd_home).get("tiny-folder")
    kwargs = dict(width=SIZE, height=SIZE, steps=2, sampler="euler", schedule="karras", cfg_scale=5.0, seeds=[3, 4])
    plain = load_stable_diffusion(manifest, "cpu")
    offloaded = load_stable_diffusion(manifest, "cpu", offload="model")
    assert not hasattr(plain, "offload") and set(offloaded.offload.networks) == {"text_encoder", "unet", "vae"}
    a = sd_text_to_image(plain, PROMPT, NEGATIVE, **kwargs)
    b = sd_text_to_image(offloaded, PROMPT, NEGATIVE, **kwargs)
    assert torch.equal(a, b) and (a * 255).std() > 1
    assert offloaded.offload.moves == ["text_encoder", "unet", "vae"]  # each network moved once per image
    init = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    offloaded.offload.moves.clear()
    c = sd_text_to_image(offloaded, PROMPT, NEGATIVE, init_images=init, strength=0.5, **kwargs)
    assert torch.equal(c, sd_text_to_image(plain, PROMPT, NEGATIVE, init_images=init, strength=0.5, **kwargs))
    assert offloaded.offload.moves == ["text_encoder", "vae", "unet", "vae"]  # the VAE encodes the picture first
    offloaded.offload.release()
    assert offloaded.offload.resident is None
    # the setting: DESIGNERBOX_OFFLOAD, else the manifest (models add --offload)
    monkeypatch.setenv("DESIGNERBOX_OFFLOAD", "model")
    assert hasattr(load_stable_diffusion(manifest, "cpu"), "offload")
    monkeypatch.setenv("DESIGNERBOX_OFFLOAD", "sometimes")
    with pytest.raises(ValueError, match="offload must be one of none, model"):
        load_stable_diffusion(manifest, "cpu")
    monkeypatch.delenv("DESIGNERBOX_OFFLOAD")
    _add([tiny_sd[0], "--id", "tiny-offloaded", "--offload", "model"], capsys)
    offloaded_by_manifest = Registry(sd_home).get("tiny-offloaded")
    assert offloaded_by_manifest.offload == "model"
    assert hasattr(load_stable_diffusion(offloaded_by_manifest, "cpu"), "offload")


def test_offload_follows_the_calls():
    """A call to a network or to one of its children makes the whole network resident (the previous
    one sent back); removed hooks move nothing."""
    from torch import nn

    from designerbox.pipelines.offload import ModelOffload

    a, b = nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2))
    off = ModelOffload({"a": a, "b": b}, "cpu", "cpu")
    x = torch.ones(1, 2)
    a(x), b[0](x), b(x), a(x)  # a child's call makes its whole network resident
    assert off.moves == ["a", "b", "a"] and off.resident == "a"
    off.remove()
    b(x)
    assert off.moves == ["a", "b", "a"]
