"""Generating from user Stable Diffusion checkpoints, offline, on tiny random-weight models: a single
file and a diffusers folder of SD 1.x, SD 2.x and SDXL go through `designerbox models add` and
`designerbox generate` and draw the same image; our samplers on SD 1.x match diffusers' own
StableDiffusionPipeline; the speed-ups keep the image; inpainting keeps the unmasked pixels.

The tiny models (UNet 32-64 channels, VAE 2 levels, CLIP text encoders of 2 layers with the full
49,408-token vocabulary) are the session fixtures of conftest.py, built from tiny_checkpoints.py, which
also writes the single files in the original key layout that A1111 and ComfyUI users keep. Adding
files, detection and bad files: test_user_checkpoints.py; what is particular to SD 2.x and SDXL:
test_sd2.py, test_sdxl.py; LoRA: test_lora.py.

The CLIP tokenizer needs `open-clip-torch==3.3.0` from PyPI (pip download, cached per session: the
clip_cache fixture of conftest.py); tests that need it are skipped when pip cannot fetch it.
"""

from __future__ import annotations

import json

import pytest
import torch
from tiny_checkpoints import CFG, NEGATIVE, PROMPT, SEEDS, SIZE, diffusers_images, generate
from tiny_checkpoints import add_model as _add

# --- add, load, generate: the same path for each family ----------------------------------------------------

ADDED = {  # family: (its tiny checkpoint, what its manifest says besides the file's hash, its tokenizers' pad tokens)
    "sd15": ("tiny_sd", {"licence": "unknown", "native_size": [512, 512], "kind": "diffusion"}, {}),
    "sd2": ("tiny_sd2", {"text_encoder": "openclip-vit-h-14", "prediction": "v"},
            {"tokenizer": "!"}),  # OpenCLIP's tokenizer pads with "!" (id 0), as SD 2.x's published tokenizer
    "sdxl": ("tiny_sdxl", {"native_size": [1024, 1024], "prediction": "eps", "text_encoder":
                           "clip-vit-l-14+openclip-vit-bigg-14", "defaults": {"sampler": "dpmpp_2m", "schedule": "karras",
                                                                             "steps": 30, "cfg_scale": 7.0}},
             {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}),
}


@pytest.mark.parametrize("family", list(ADDED))
def test_single_file_is_added_and_generates(family, request, sd_home, tmp_path, capsys):
    from designerbox.registry.files import file_sha256

    fixture, expected, pads = ADDED[family]
    folder, single, config = request.getfixturevalue(fixture)
    report = _add([single, "--config", config, "--id", f"{family}-single"], capsys)
    sha = file_sha256(single)
    assert report["family"] == family and report["sha256"] == sha and report["hash"] == sha[:10]
    model_dir = sd_home / "models" / f"{family}-single"
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert {k: manifest[k] for k in expected} == expected and manifest["files"][0]["sha256"] == sha
    for tokenizer, pad in pads.items():
        assert json.loads((model_dir / "config" / tokenizer / "special_tokens_map.json").read_text())["pad_token"] == pad
    assert generate(f"{family}-single", tmp_path / "out", sampler="dpmpp_2m") == 0
    record = json.loads(capsys.readouterr().out)[0]["record"]
    assert record["model"]["sha256"] == sha and record["model"]["hash"] == sha[:10]
    assert record["model"]["family"] == family and record["native_size"] == [SIZE, SIZE]
    assert record["conditioning"]["negative_prompt"] == NEGATIVE


@pytest.mark.parametrize("family", list(ADDED))
def test_single_file_and_folder_give_the_same_image(family, request, sd_home, tmp_path, capsys):
    """With a negative prompt and with none (SDXL: zeros for the unconditional branch): the two formats
    of the same weights draw the same pixels, and the empty negative prompt changes the image."""
    import numpy as np
    from PIL import Image

    folder, single, config = request.getfixturevalue(ADDED[family][0])
    _add([single, "--config", config, "--id", "tiny-single"], capsys)
    _add([folder, "--id", "tiny-folder"], capsys)
    images = {}
    for negative in (NEGATIVE, None):
        for model_id in ("tiny-single", "tiny-folder"):
            assert generate(model_id, tmp_path / f"{model_id}-{negative}", negative=negative) == 0
            path = json.loads(capsys.readouterr().out)[0]["path"]
            images[model_id, negative] = np.asarray(Image.open(path)).astype(int)
    for negative in (NEGATIVE, None):
        a, b = images["tiny-single", negative], images["tiny-folder", negative]
        assert a.shape == (SIZE, SIZE, 3) and a.std() > 1
        assert np.abs(a - b).max() <= 1
    assert np.abs(images["tiny-folder", NEGATIVE] - images["tiny-folder", None]).max() > 1


# --- against diffusers' own pipeline ---------------------------------------------------------------------------

@pytest.mark.parametrize("sampler, scheduler, kwargs", [
    ("euler", "EulerDiscreteScheduler", dict(use_karras_sigmas=True, timestep_spacing="linspace")),
    ("dpmpp_2m", "DPMSolverMultistepScheduler", dict(algorithm_type="dpmsolver++", solver_order=2,
                                                      use_karras_sigmas=True)),
])
def test_our_samplers_match_diffusers_stable_diffusion_pipeline(tiny_sd, sd_home, capsys, sampler, scheduler, kwargs):
    """The same weights, prompt, noise and steps through diffusers' own pipeline and scheduler.

    In [0, 255] pixel units. Euler: the same algorithm, max 0.05 (seen 0.0004: float32 rounding).
    DPM++ 2M: diffusers gives the UNet floor(t) (int64 timesteps, see pipelines/reference_diffusers.py),
    so mean 1, max 8 (seen mean 0.04, max 0.27)."""
    import diffusers
    from diffusers import StableDiffusionPipeline

    from designerbox.pipelines.stable_diffusion import sd_text_to_image
    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    folder, single, config = tiny_sd
    _add([single, "--config", config, "--id", "tiny-single"], capsys)
    ours = load_stable_diffusion(Registry(sd_home).get("tiny-single"), "cpu")
    mine = sd_text_to_image(ours, PROMPT, NEGATIVE, width=SIZE, height=SIZE, steps=2, sampler=sampler,
                            schedule="karras", cfg_scale=CFG, seeds=SEEDS)
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                                   safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config, **kwargs)
    theirs = diffusers_images(pipe)
    assert mine.shape == theirs.shape == (len(SEEDS), 3, SIZE, SIZE)
    assert (mine * 255).std() > 1
    diff = (mine - theirs).abs() * 255
    if sampler == "euler":
        assert diff.max() < 0.05, diff.max()
    else:
        assert diff.mean() < 1 and diff.max() < 8, (diff.mean(), diff.max())


# --- speed-ups (pipelines/speed.py): the same image as the plain path ------------------------------------

@pytest.mark.parametrize("options", [dict(channels_last=True, fuse_qkv=False), dict(channels_last=False, fuse_qkv=True),
                                     dict(channels_last=True, fuse_qkv=True, compile="default")])
def test_speed_ups_keep_the_image(tiny_sd, sd_home, capsys, tmp_path, monkeypatch, options):
    """Each speed-up on the tiny model on the CPU, against the unoptimised path, same seeds: within
    0.01 of a [0, 255] pixel (float32 reordering; seen 2e-4). The compile case really compiles (inductor,
    C++ on the CPU, ~30 s) and keeps its kernels under TORCHINDUCTOR_CACHE_DIR."""
    from designerbox.pipelines.speed import speed_up
    from designerbox.pipelines.stable_diffusion import sd_text_to_image
    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    folder, single, config = tiny_sd
    _add([folder, "--id", "tiny-folder"], capsys)
    manifest = Registry(sd_home).get("tiny-folder")
    kwargs = dict(width=SIZE, height=SIZE, steps=2, sampler="dpmpp_2m", schedule="karras", cfg_scale=CFG, seeds=SEEDS)
    plain = sd_text_to_image(load_stable_diffusion(manifest, "cpu"), PROMPT, NEGATIVE, **kwargs)
    fast = load_stable_diffusion(manifest, "cpu")
    applied = speed_up(fast, **options)
    assert applied == {"channels_last": options["channels_last"], "fuse_qkv": options["fuse_qkv"],
                       "compile": options.get("compile")}
    if options["channels_last"]:
        assert fast.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    if options["fuse_qkv"]:
        assert any(hasattr(m, "to_qkv") for m in fast.unet.modules())
    image = sd_text_to_image(fast, PROMPT, NEGATIVE, **kwargs)
    assert (plain * 255).std() > 1
    assert ((image - plain).abs() * 255).max() < 0.01
    if options.get("compile"):
        assert any((sd_home / "cache" / "inductor").iterdir())  # the compiled kernels, for the next process


def test_an_unknown_compile_mode_names_the_choices():
    from types import SimpleNamespace

    from designerbox.pipelines.speed import speed_up

    with pytest.raises(ValueError, match="reduce-overhead, max-autotune-no-cudagraphs, default"):
        speed_up(SimpleNamespace(unet=None, vae=None), compile="fastest")


# --- image to image and inpainting on a latent model ------------------------------------------------------

def test_sd_inpainting_keeps_the_unmasked_pixels(tiny_sd, sd_home, capsys):
    """The VAE round trip changes pixels, so the result is composited onto the original outside the
    mask (1 = repaint); inside, the image is redrawn."""
    from designerbox.pipelines.stable_diffusion import sd_text_to_image
    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    folder, single, config = tiny_sd
    _add([folder, "--id", "tiny-folder"], capsys)
    model = load_stable_diffusion(Registry(sd_home).get("tiny-folder"), "cpu")
    g = torch.Generator().manual_seed(0)
    init = torch.rand(1, 3, SIZE, SIZE, generator=g)
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[..., SIZE // 2:] = 1
    kwargs = dict(width=SIZE, height=SIZE, steps=4, sampler="dpmpp_2m", schedule="karras", cfg_scale=CFG, seeds=SEEDS)
    out = sd_text_to_image(model, PROMPT, NEGATIVE, init_images=init, mask=mask, **kwargs)
    assert out.shape == (2, 3, SIZE, SIZE)
    assert torch.equal(out[..., : SIZE // 2], init[..., : SIZE // 2].expand(2, -1, -1, -1))
    assert (out[..., SIZE // 2:] - init[..., SIZE // 2:]).abs().mean() > 0.01
    # image to image at a low strength stays nearer the picture than text to image does
    near = sd_text_to_image(model, PROMPT, NEGATIVE, init_images=init, strength=0.25, **kwargs)
    far = sd_text_to_image(model, PROMPT, NEGATIVE, **kwargs)
    assert (near - init).abs().mean() < (far - init).abs().mean()
