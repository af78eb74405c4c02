"""User Stable Diffusion 2.x checkpoints, offline, on a tiny random-weight v-prediction model.

The tiny SD 2.x (UNet 32-64 channels with linear projections and per-level head counts, as SD 2.x's
[5, 10, 20, 20]; a 2-level VAE; a 2-layer OpenCLIP-like text encoder, gelu, with the full 49,408-token
vocabulary and a tokenizer padding with "!") is saved twice: as a diffusers folder
(StableDiffusionPipeline.save_pretrained, v_prediction scheduler) and as one .safetensors file under
the real SD 2.x key names (`to_sd2_ldm` below: the UNet and VAE mappings of the SD 1.x test, the text
encoder under OpenCLIP's `cond_stage_model.model.*` names with fused QKV, plus the original's last
layer, which SD 2.x never runs (it conditions on the penultimate one), its text_projection and
logit_scale). Both go through `designerbox models add` and `designerbox generate`, and our Euler
matches diffusers' own StableDiffusionPipeline on the v-prediction model.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_sdxl import open_clip_to_ldm
from test_stable_diffusion import TINY_CLIP, TINY_UNET, TINY_VAE, unet_to_ldm, vae_to_ldm
from tiny_checkpoints import add_model as _add
from tiny_checkpoints import packaged_scheduler, save_both, tiny_models

from designerbox.registry.files import ModelFileError

PROMPT, NEGATIVE = "a photo of a cat", "blurry"
SEEDS = [3, 4]
SIZE = 32          # pixels; latents are 16x16 (the tiny VAE has one downsampling)
CFG = 5.0

TINY_SD2_UNET = dict(TINY_UNET, attention_head_dim=(2, 4), use_linear_projection=True, upcast_attention=True)
TINY_OPEN_CLIP = dict(TINY_CLIP, hidden_act="gelu")   # OpenCLIP's activation (OpenAI's CLIP: quick_gelu)


# --- diffusers -> the original SD 2.x keys (ldm layout, OpenCLIP text encoder) ----------------------------

def sd2_text_encoder_to_ldm(text_encoder, prefix: str = "cond_stage_model.model.", seed: int = 1) -> dict:
    """A CLIPTextModel of n layers -> the OpenCLIP of the original file, n + 1 resblocks: the last one (random
    here) is the layer SD 2.x skips; text_projection is OpenCLIP's, unused by SD 2.x."""
    state = {(k if k.startswith("text_model.") else f"text_model.{k}"): v for k, v in text_encoder.state_dict().items()}
    out = open_clip_to_ldm(state, prefix)
    n, width = text_encoder.config.num_hidden_layers, text_encoder.config.hidden_size
    g = torch.Generator().manual_seed(seed)

    def random_like(value):  # no data on the meta device (the full-size check)
        return torch.empty_like(value) if value.is_meta else torch.randn(value.shape, generator=g) * 0.05

    for key in [k for k in out if k.startswith(f"{prefix}transformer.resblocks.{n - 1}.")]:
        out[key.replace(f".resblocks.{n - 1}.", f".resblocks.{n}.")] = random_like(out[key])
    out[prefix + "text_projection"] = random_like(out[prefix + "ln_final.weight"].expand(width, width))
    return out


def to_sd2_ldm(unet, vae, text_encoder) -> dict:
    return (unet_to_ldm(unet.state_dict(), unet.config) | vae_to_ldm(vae.state_dict(), vae.config)
            | sd2_text_encoder_to_ldm(text_encoder))


# --- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_sd2(tmp_path_factory, clip_cache):
    """(diffusers folder, single file, config folder) of one tiny random-weight SD 2.x (v-prediction)."""
    from diffusers import StableDiffusionPipeline

    from designerbox.registry.clip_tokenizer import clip_tokenizer

    unet, vae, text_encoder, _ = tiny_models(0, TINY_SD2_UNET, TINY_VAE, clip=TINY_OPEN_CLIP)
    scheduler = packaged_scheduler("sd2")
    assert scheduler.config.prediction_type == "v_prediction"
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(clip_cache, "!"),
                                   unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    return save_both(tmp_path_factory.mktemp("sd2"), "tiny-sd2", pipe, to_sd2_ldm(unet, vae, text_encoder))


def _generate(model_id, out, sampler="euler"):
    from designerbox.cli import main

    return main(["generate", PROMPT, "--model", model_id, "--steps", "2", "--sampler", sampler, "--schedule",
                 "karras", "--cfg", str(CFG), "--size", f"{SIZE}x{SIZE}", "--seed", "3", "--negative", NEGATIVE,
                 "-o", str(out), "--json", "--no-gallery"])


# --- detection and the parameterisation ------------------------------------------------------------------

def test_sd2_is_detected_in_both_formats(tiny_sd2, tmp_path):
    """A single file: sd2, v assumed (with a note); a folder: its scheduler decides, and its text encoder
    (OpenCLIP: gelu) tells it from SD 1.x, which shares the pipeline class."""
    from designerbox.registry.families import detect

    folder, single, _ = tiny_sd2
    found = detect(single)
    assert found.id == "sd2" and found.prediction == "v" and "--prediction eps" in found.note
    assert (detect(folder).id, detect(folder).prediction, detect(folder).native_size) == ("sd2", "v", 768)
    eps = tmp_path / "eps"
    shutil.copytree(folder, eps, ignore=shutil.ignore_patterns("*.safetensors"))
    sched = eps / "scheduler" / "scheduler_config.json"
    sched.write_text(json.dumps(json.loads(sched.read_text()) | {"prediction_type": "epsilon"}))
    assert (detect(eps).id, detect(eps).prediction, detect(eps).native_size) == ("sd2", "eps", 512)


def test_the_single_file_holds_the_real_sd2_key_names(tiny_sd2):
    from safetensors import safe_open

    with safe_open(str(tiny_sd2[1]), "pt") as f:
        keys = set(f.keys())
    for key in ["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight",
                "cond_stage_model.model.transformer.resblocks.2.mlp.c_proj.weight",  # the layer SD 2.x skips
                "cond_stage_model.model.token_embedding.weight", "cond_stage_model.model.positional_embedding",
                "cond_stage_model.model.ln_final.weight", "cond_stage_model.model.text_projection",
                "model.diffusion_model.input_blocks.1.1.proj_in.weight", "first_stage_model.decoder.mid.attn_1.q.weight"]:
        assert key in keys, key
    with safe_open(str(tiny_sd2[1]), "pt") as f:  # use_linear_projection: proj_in is a linear layer, not a 1x1 conv
        assert f.get_slice("model.diffusion_model.input_blocks.1.1.proj_in.weight").get_shape() == [32, 32]


def test_prediction_of_a_single_file_from_the_flag_a_yaml_or_the_default(tiny_sd2, sd_home, tmp_path, capsys):
    folder, single, config = tiny_sd2

    def scheduler_of(model_id):
        path = sd_home / "models" / model_id / "config" / "scheduler" / "scheduler_config.json"
        return json.loads(path.read_text())["prediction_type"]

    # no flag, no yaml: v, and the note says how to choose eps
    report = _add([single, "--config", config, "--id", "guessed"], capsys)
    assert report["prediction"] == "v" and report["native_size"] == 768 and "--prediction eps" in report["note"]
    assert scheduler_of("guessed") == "v_prediction"
    # --prediction eps: SD 2.x-base, 512 px; written into the copied scheduler config and the manifest
    report = _add([single, "--config", config, "--id", "base", "--prediction", "eps"], capsys)
    assert report["prediction"] == "eps" and report["native_size"] == 512 and "--prediction" in report["note"]
    manifest = json.loads((sd_home / "models" / "base" / "manifest.json").read_text())
    assert manifest["prediction"] == "eps" and manifest["native_size"] == [512, 512]
    assert scheduler_of("base") == "epsilon"
    # an A1111 yaml beside the file: v2-inference.yaml (no parameterization: eps), v2-inference-v.yaml (v)
    beside = tmp_path / "beside"
    beside.mkdir()
    shutil.copy(single, beside / "model.safetensors")
    (beside / "model.yaml").write_text("model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n"
                                       "  params:\n    linear_start: 0.00085\n")
    report = _add([beside / "model.safetensors", "--config", config, "--id", "yaml-eps"], capsys)
    assert report["prediction"] == "eps" and "model.yaml" in report["note"]
    (beside / "model.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert _add([beside / "model.safetensors", "--config", config, "--id", "yaml-v"], capsys)["prediction"] == "v"
    # a folder's scheduler decides: a flag that disagrees is refused, naming both
    from designerbox.registry.user_checkpoints import add_checkpoint

    with pytest.raises(ModelFileError, match=r"scheduler_config.json says v-prediction, not eps"):
        add_checkpoint(folder, sd_home, sd_home / "cache", prediction="eps")
    with pytest.raises(ModelFileError, match=r"unknown prediction 'x0'; choose one of: eps, v"):
        add_checkpoint(single, sd_home, sd_home / "cache", prediction="x0")


# --- add, load, generate -------------------------------------------------------------------------------

def test_sd2_single_file_is_added_and_generates(tiny_sd2, sd_home, tmp_path, capsys):
    from designerbox.registry.files import file_sha256

    folder, single, config = tiny_sd2
    report = _add([single, "--config", config, "--id", "tiny-sd2-single"], capsys)
    sha = file_sha256(single)
    assert report["family"] == "sd2" and report["sha256"] == sha and report["hash"] == sha[:10]
    model_dir = sd_home / "models" / "tiny-sd2-single"
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["text_encoder"] == "openclip-vit-h-14" and manifest["prediction"] == "v"
    pad = json.loads((model_dir / "config" / "tokenizer" / "special_tokens_map.json").read_text())["pad_token"]
    assert pad == "!"  # OpenCLIP's tokenizer pads with "!" (id 0), as SD 2.x's published tokenizer
    assert _generate("tiny-sd2-single", tmp_path / "out", sampler="dpmpp_2m") == 0
    record = json.loads(capsys.readouterr().out)[0]["record"]
    assert record["model"]["sha256"] == sha and record["model"]["family"] == "sd2"
    assert record["native_size"] == [SIZE, SIZE]


def test_sd2_single_file_and_folder_give_the_same_image(tiny_sd2, sd_home, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    folder, single, config = tiny_sd2
    _add([single, "--config", config, "--id", "tiny-sd2-single"], capsys)
    _add([folder, "--id", "tiny-sd2-folder"], capsys)
    images = []
    for model_id in ("tiny-sd2-single", "tiny-sd2-folder"):
        assert _generate(model_id, tmp_path / model_id) == 0
        images.append(np.asarray(Image.open(json.loads(capsys.readouterr().out)[0]["path"])).astype(int))
    assert images[0].shape == (SIZE, SIZE, 3) and images[0].std() > 1
    assert np.abs(images[0] - images[1]).max() <= 1


def test_our_euler_matches_diffusers_on_the_v_prediction_model(tiny_sd2, sd_home, capsys):
    """The single file through our loader, sampler and v denoiser; the folder through diffusers'
    StableDiffusionPipeline with EulerDiscreteScheduler (v_prediction, Karras sigmas, linspace spacing),
    same noise. In [0, 255] pixel units, max 0.05 (float32 rounding; the same algorithm). An eps reading
    of the same weights draws another image: the parameterisation is really used."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from designerbox.pipelines.stable_diffusion import LatentDiffusion, sd_text_to_image
    from designerbox.pipelines.text_to_image import initial_noise
    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    folder, single, config = tiny_sd2
    _add([single, "--config", config, "--id", "tiny-sd2-single"], capsys)
    ours = load_stable_diffusion(Registry(sd_home).get("tiny-sd2-single"), "cpu")
    assert isinstance(ours, LatentDiffusion) and ours.prediction == "v" and ours.tokenizer.pad_token_id == 0
    kwargs = dict(width=SIZE, height=SIZE, steps=2, sampler="euler", schedule="karras", cfg_scale=CFG, seeds=SEEDS)
    mine = sd_text_to_image(ours, PROMPT, NEGATIVE, **kwargs)
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                                   safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True,
                                                        timestep_spacing="linspace")
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe([PROMPT] * len(SEEDS), negative_prompt=[NEGATIVE] * len(SEEDS), height=SIZE, width=SIZE,
                  num_inference_steps=2, guidance_scale=CFG, latents=initial_noise(SEEDS, (4, SIZE // 2, SIZE // 2)),
                  output_type="pt").images
    assert mine.shape == theirs.shape == (len(SEEDS), 3, SIZE, SIZE)
    assert (mine * 255).std() > 1
    diff = (mine - theirs).abs() * 255
    assert diff.max() < 0.05, diff.max()
    ours.prediction = "eps"
    assert ((sd_text_to_image(ours, PROMPT, NEGATIVE, **kwargs) - mine).abs() * 255).max() > 1


def test_the_packaged_sd2_config_is_the_published_architecture():
    """On the meta device (no memory): the parameter counts of SD 2.1's UNet (865.9 M), VAE and the 23
    layers of OpenCLIP ViT-H/14 that SD 2.x runs (340.4 M); our inverse mapping gives names diffusers
    recognises as SD 2.x (infer_diffusers_model_type "v2"), and its converters, with the 24th layer
    dropped as our loader does, map them back onto exactly the networks' tensors."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        infer_diffusers_model_type,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from designerbox.registry.families import family_from_keys
    from designerbox.registry.user_checkpoints import _from_single_file, packaged_config

    config = packaged_config("sd2")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(config / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(config / "vae")))
        te = CLIPTextModel(CLIPTextConfig.from_json_file(str(config / "text_encoder" / "config.json")))
    counts = [sum(p.numel() for p in n.parameters()) for n in (unet, vae, te)]
    assert counts == [865_910_724, 83_653_863, 340_387_840]
    ldm = to_sd2_ldm(unet, vae, te)
    assert "cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight" in ldm  # 24 in the file
    assert family_from_keys(list(ldm)).id == "sd2" and infer_diffusers_model_type(ldm) == "v2"
    assert set(convert_ldm_unet_checkpoint(ldm, unet.config)) == set(unet.state_dict())
    assert set(convert_ldm_vae_checkpoint(ldm, vae.config)) == set(vae.state_dict())
    clip = {k.removeprefix("text_model."): v for k, v in _from_single_file(ldm, "sd2", "text_encoder", te).items()}
    assert set(clip) == set(te.state_dict())
