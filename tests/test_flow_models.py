"""SD3 and FLUX (dev, schnell) diffusers folders, offline, on tiny random-weight models: detected and added
with `designerbox models add`, drawn with `designerbox generate` and through the Studio, our Euler sampler
through the flow adapter against diffusers' StableDiffusion3Pipeline / FluxPipeline at the same noise
levels, inpainting, CPU offload, and folders with missing parts named.

The tiny models (a 2-layer MMDiT or FLUX transformer, a 16-channel VAE of 2 levels, CLIP text encoders of
2 layers with the full CLIP vocabulary, a 2-layer T5 encoder with a tiny T5 tokenizer) are the session
fixtures tiny_sd3 and tiny_flux of conftest.py, built by tiny_flow_checkpoints.py. Single files in the
original layouts: test_flow_single_file.py.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tiny_checkpoints import CFG, NEGATIVE, PROMPT, SEEDS, SIZE
from tiny_checkpoints import add_model as _add
from tiny_checkpoints import load as _load

from designerbox.registry.files import ModelFileError


def _theirs_sigmas(model, steps: int, schedule: str, width: int, height: int):
    """Our noise levels as diffusers' flow scheduler takes them: t = sigma / (1 + sigma), unshifted
    (it shifts what it is given), and t of the first level (the scale of the starting noise)."""
    d = model.denoiser(width, height) if getattr(model, "shift_by_size", False) else model.denoiser()
    from designerbox.samplers import make_sigmas

    sigmas = make_sigmas(schedule, steps, d).double()[:-1]
    t = sigmas / (1 + sigmas)
    return (t / (d.shift - (d.shift - 1) * t)).tolist(), float(t[0])


# --- detection and registration ----------------------------------------------------------------------------

def test_flow_folders_are_detected(tiny_sd3, tiny_flux):
    from designerbox.registry.families import detect

    assert detect(tiny_sd3).id == "sd3"
    assert detect(tiny_flux["flux-dev"]).id == "flux-dev" and detect(tiny_flux["flux-schnell"]).id == "flux-schnell"


def test_flow_folders_are_added(tiny_sd3, tiny_flux, sd_home, capsys):
    from designerbox.registry.discovery import Registry
    from designerbox.registry.files import file_sha256

    report = _add([tiny_sd3, "--id", "tiny-sd3"], capsys)
    assert report["family"] == "sd3" and report["prediction"] == "flow"
    m = Registry(sd_home).get("tiny-sd3")
    assert m.files[0].path.endswith("transformer/diffusion_pytorch_model.safetensors")  # the denoiser's hash
    assert m.weights_sha256 == file_sha256(tiny_sd3 / "transformer" / "diffusion_pytorch_model.safetensors")
    assert m.size_multiple == 4 and m.defaults.sampler == "euler" and m.defaults.steps == 28
    _add([tiny_flux["flux-dev"], "--id", "tiny-dev"], capsys)
    _add([tiny_flux["flux-schnell"], "--id", "tiny-schnell"], capsys)
    dev, schnell = Registry(sd_home).get("tiny-dev"), Registry(sd_home).get("tiny-schnell")
    assert (dev.family, dev.defaults.cfg_scale, schnell.family, schnell.defaults.steps) == (
        "flux-dev", 3.5, "flux-schnell", 4)
    assert dev.size_multiple == 4  # the VAE's 2 x the 2x2 packing


def test_a_flow_folder_without_its_t5_tokenizer_names_what_to_add(tiny_flux, sd_home, tmp_path):
    from designerbox.registry.user_checkpoints import add_checkpoint

    broken = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_flux["flux-dev"], broken, ignore=shutil.ignore_patterns("tokenizer.json"))
    with pytest.raises(ModelFileError, match=r"tokenizer_2/tokenizer\.json.*copy the tokenizer_2/ folder"):
        add_checkpoint(broken, sd_home, sd_home / "cache")


# --- generation through the user path -------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["sd3", "flux-dev", "flux-schnell"])
def test_flow_models_generate_through_the_cli(tiny_sd3, tiny_flux, sd_home, tmp_path, capsys, which):
    import numpy as np
    from PIL import Image

    from designerbox.cli import main

    folder = tiny_sd3 if which == "sd3" else tiny_flux[which]
    _add([folder, "--id", f"tiny-{which}"], capsys)
    previews = []
    assert main(["generate", PROMPT, "--model", f"tiny-{which}", "--steps", "2", "--sampler", "dpmpp_2m",
                 "--size", f"{SIZE}x{SIZE}", "--seed", "3", "-o", str(tmp_path / "out"), "--json", "--no-gallery",
                 "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)[0]
    image = np.asarray(Image.open(out["path"]))
    assert image.shape == (SIZE, SIZE, 3) and image.std() > 1
    record = out["record"]
    assert record["model"]["family"] == which and record["request"]["schedule"] == "simple"
    assert record["native_size"] == [SIZE, SIZE]
    # the step previews of the 16-channel latents
    from designerbox.jobs.schema import GenerationRequest
    from designerbox.settings import Settings
    from designerbox.studio import Studio

    Studio(Settings.from_env()).generate(GenerationRequest(prompt=PROMPT, model=f"tiny-{which}", steps=2,
                                                           width=SIZE, height=SIZE, seed=3),
                                         progress=previews.append, save=False)
    assert len(previews) == 2 and previews[0]["preview"].shape == (1, 3, SIZE // 2, SIZE // 2)


# --- against diffusers' own pipelines --------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", ["simple", "karras"])
def test_our_euler_matches_stable_diffusion_3_pipeline(tiny_sd3, sd_home, capsys, schedule):
    """The same weights, prompts, noise and noise levels through StableDiffusion3Pipeline (its flow
    Euler scheduler given our levels, unshifted, and the starting noise scaled by the first t).
    In [0, 255] pixel units, the same algorithm up to float32 rounding: max 0.25 (seen: simple max
    0.018, mean 0.003; karras max 0.098, mean 0.013, its first level t = 0.99983 going through
    diffusers' float32 unshift and shift)."""
    from diffusers import StableDiffusion3Pipeline

    from designerbox.pipelines.sampling import initial_noise
    from designerbox.pipelines.stable_diffusion_3 import sd3_text_to_image

    _add([tiny_sd3, "--id", "tiny-sd3"], capsys)
    ours = _load("tiny-sd3", sd_home)
    mine = sd3_text_to_image(ours, PROMPT, NEGATIVE, width=SIZE, height=SIZE, steps=2, sampler="euler",
                             schedule=schedule, cfg_scale=CFG, seeds=SEEDS)
    sigmas, t0 = _theirs_sigmas(ours, 2, schedule, SIZE, SIZE)
    pipe = StableDiffusion3Pipeline.from_pretrained(str(tiny_sd3), local_files_only=True, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe([PROMPT] * 2, negative_prompt=[NEGATIVE] * 2, height=SIZE, width=SIZE, num_inference_steps=2,
                  guidance_scale=CFG, sigmas=sigmas, latents=initial_noise(SEEDS, (16, SIZE // 2, SIZE // 2)) * t0,
                  output_type="pt").images
    assert mine.shape == theirs.shape == (2, 3, SIZE, SIZE) and (mine * 255).std() > 1
    diff = (mine - theirs).abs() * 255
    assert diff.mean() < 0.02 and diff.max() < 0.25, (diff.mean(), diff.max())


@pytest.mark.parametrize("which, cfg", [("flux-dev", 3.5), ("flux-schnell", 1.0)])
def test_our_euler_matches_flux_pipeline(tiny_flux, sd_home, capsys, which, cfg):
    """FluxPipeline at the same levels: dev with its size-dependent shift (mu from 64 image tokens) and
    the guidance scale as the network's input, schnell with shift 1 and no guidance. Max 0.05 of 255
    (seen 0.014 for both)."""
    from diffusers import FluxPipeline

    from designerbox.pipelines.flux import flux_text_to_image, pack
    from designerbox.pipelines.sampling import initial_noise

    _add([tiny_flux[which], "--id", which], capsys)
    ours = _load(which, sd_home)
    assert ours.guidance_embedded == (which == "flux-dev")
    mine = flux_text_to_image(ours, PROMPT, None, width=SIZE, height=SIZE, steps=2, sampler="euler",
                              schedule="simple", cfg_scale=cfg, seeds=SEEDS)
    sigmas, t0 = _theirs_sigmas(ours, 2, "simple", SIZE, SIZE)
    pipe = FluxPipeline.from_pretrained(str(tiny_flux[which]), local_files_only=True, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    noise = pack(initial_noise(SEEDS, (16, SIZE // 2, SIZE // 2)) * t0)
    theirs = pipe([PROMPT] * 2, height=SIZE, width=SIZE, num_inference_steps=2, guidance_scale=cfg, sigmas=sigmas,
                  latents=noise, output_type="pt").images
    assert mine.shape == theirs.shape == (2, 3, SIZE, SIZE) and (mine * 255).std() > 1
    diff = (mine - theirs).abs() * 255
    assert diff.max() < 0.05, diff.max()


def test_a_flow_folder_with_wrong_tensors_is_named(tiny_flux, sd_home, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken-flux"
    shutil.copytree(tiny_flux["flux-schnell"], broken)
    weights = broken / "transformer" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    del state["proj_out.weight"]
    save_file(state, str(weights))
    _add([broken, "--id", "broken"], capsys)
    with pytest.raises(ModelFileError, match=r"transformer.*1 missing.*proj_out\.weight"):
        _load("broken", sd_home)


def test_emphasis_marks_are_taken_out_for_the_flow_models(tiny_flux, sd_home, capsys):
    """SD3 and FLUX take no per-token weights here: "(cat:1.3)" reads as "cat", so the image is the plain one."""
    from designerbox.pipelines.flux import flux_text_to_image
    from designerbox.pipelines.stable_diffusion_3 import plain_prompt

    assert plain_prompt("a (red:1.3) car, [blurry] BREAK ((sharp))") == "a red car, blurry sharp"
    assert plain_prompt(r"a \(literal\) x") == "a (literal) x"
    _add([tiny_flux["flux-schnell"], "--id", "schnell"], capsys)
    model = _load("schnell", sd_home)
    kwargs = dict(width=SIZE, height=SIZE, steps=1, sampler="euler", schedule="simple", cfg_scale=1.0, seeds=[3])
    assert torch.equal(flux_text_to_image(model, "a photo of a (cat:1.3)", None, **kwargs),
                       flux_text_to_image(model, PROMPT, None, **kwargs))


def test_flux_with_cpu_offload_keeps_the_image(tiny_flux, sd_home, capsys):
    """The offload hooks on the transformer, VAE and both text encoders (both devices the CPU here)."""
    from designerbox.pipelines.flux import flux_text_to_image
    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    _add([tiny_flux["flux-dev"], "--id", "dev"], capsys)
    manifest = Registry(sd_home).get("dev")
    kwargs = dict(width=SIZE, height=SIZE, steps=2, sampler="euler", schedule="simple", cfg_scale=3.5, seeds=SEEDS)
    offloaded = load_stable_diffusion(manifest, "cpu", offload="model")
    assert set(offloaded.offload.networks) == {"transformer", "vae", "text_encoder", "text_encoder_2"}
    a = flux_text_to_image(offloaded, PROMPT, None, **kwargs)
    assert offloaded.offload.moves == ["text_encoder", "text_encoder_2", "transformer", "vae"]
    assert torch.equal(a, flux_text_to_image(load_stable_diffusion(manifest, "cpu"), PROMPT, None, **kwargs))


@pytest.mark.parametrize("which", ["sd3", "flux-schnell"])
def test_flow_models_inpaint_and_keep_the_unmasked_pixels(tiny_sd3, tiny_flux, sd_home, capsys, which):
    """Image to image and inpainting go through the same loop (pipelines/sampling.draw): the VAE's shift
    and scale on the way in, the mask on the flow denoiser's estimate, the original pixels outside it."""
    from designerbox.pipelines.sampling import draw

    _add([tiny_sd3 if which == "sd3" else tiny_flux[which], "--id", which], capsys)
    model = _load(which, sd_home)
    init = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[..., SIZE // 2:] = 1
    kwargs = dict(width=SIZE, height=SIZE, steps=4, sampler="euler", schedule="simple", cfg_scale=1.0, seeds=SEEDS)
    out = draw(model, PROMPT, None, init_images=init, mask=mask, **kwargs)
    assert torch.equal(out[..., : SIZE // 2], init[..., : SIZE // 2].expand(2, -1, -1, -1))
    assert (out[..., SIZE // 2:] - init[..., SIZE // 2:]).abs().mean() > 0.01
    # image to image at a low strength stays nearer the picture (as the random VAE gives it back) than text
    # to image does
    roundtrip = model.decode(model.encode_images(init))
    near = draw(model, PROMPT, None, init_images=init, strength=0.25, **kwargs)
    far = draw(model, PROMPT, None, **kwargs)
    assert (near - roundtrip).abs().mean() < (far - roundtrip).abs().mean()
