"""SD3 and FLUX (dev, schnell) diffusers folders, offline, on tiny random-weight models.

Each tiny model (a 2-layer MMDiT or FLUX transformer, a 16-channel VAE of 2 levels, CLIP text
encoders of 2 layers with the full CLIP vocabulary, a 2-layer T5 encoder) is saved as a diffusers
folder by diffusers' own pipeline, with a tiny T5 tokenizer built with the `tokenizers` library
(tokenizer.json, as the published tokenizer folders hold it). They go through `designerbox models add`
and `designerbox generate`, and our Euler sampler through the flow adapter matches diffusers'
StableDiffusion3Pipeline / FluxPipeline at the same noise levels.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_stable_diffusion import TINY_CLIP

from designerbox.registry.files import ModelFileError

PROMPT, NEGATIVE = "a photo of a cat", "blurry"
SEEDS = [3, 4]
SIZE = 32          # pixels; latents are 16x16 (the tiny VAE has one downsampling)
CFG = 5.0
WORDS = "a photo of cat dog blurry the on mars astronaut riding horse red".split()
TINY_VAE16 = dict(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=16, layers_per_block=1,
                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  norm_num_groups=32, sample_size=32, shift_factor=0.0609, scaling_factor=1.5305,
                  use_quant_conv=False, use_post_quant_conv=False)
TINY_T5 = dict(d_model=64, d_kv=16, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
               dropout_rate=0.0)


def t5_tokenizer(folder):
    """A tiny T5 tokenizer: a unigram model over a few words (<pad> 0, </s> 1, <unk> 2), </s> appended,
    saved as tokenizer.json + tokenizer_config.json like the published tokenizer folders."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"\u2581{w}", -float(i + 1)) for i, w in enumerate(WORDS)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    t5 = T5TokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), eos_token="</s>", pad_token="<pad>",
                         unk_token="<unk>", extra_ids=0)
    t5.save_pretrained(str(folder))
    return T5TokenizerFast.from_pretrained(str(folder), local_files_only=True)


def _t5(vocab: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=vocab, **TINY_T5))


@pytest.fixture(scope="session")
def tiny_sd3(tmp_path_factory, clip_cache):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from designerbox.registry.clip_tokenizer import clip_tokenizer

    root = tmp_path_factory.mktemp("sd3")
    tok3 = t5_tokenizer(root / "t5-tokenizer")
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=16, out_channels=16, num_layers=2,
                                        attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                        joint_attention_dim=64, pooled_projection_dim=64, pos_embed_max_size=32)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=AutoencoderKL(**TINY_VAE16),
        text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(**TINY_CLIP)), tokenizer=clip_tokenizer(clip_cache),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**TINY_CLIP)),
        tokenizer_2=clip_tokenizer(clip_cache, pad_token="!"), text_encoder_3=_t5(len(tok3)), tokenizer_3=tok3)
    pipe.save_pretrained(root / "tiny-sd3", safe_serialization=True)
    return root / "tiny-sd3"


def _flux(root, clip_cache, guidance: bool):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from designerbox.registry.clip_tokenizer import clip_tokenizer

    tok2 = t5_tokenizer(root / "t5-tokenizer")
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=64,
                                         pooled_projection_dim=32, guidance_embeds=guidance, axes_dims_rope=(4, 6, 6))
    scheduler = (FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                 base_image_seq_len=256, max_image_seq_len=4096, shift=3.0)
                 if guidance else FlowMatchEulerDiscreteScheduler(shift=1.0))
    pipe = FluxPipeline(transformer=transformer, scheduler=scheduler, vae=AutoencoderKL(**TINY_VAE16),
                        text_encoder=CLIPTextModel(CLIPTextConfig(**TINY_CLIP)), tokenizer=clip_tokenizer(clip_cache),
                        text_encoder_2=_t5(len(tok2)), tokenizer_2=tok2)
    name = "tiny-flux-dev" if guidance else "tiny-flux-schnell"
    pipe.save_pretrained(root / name, safe_serialization=True)
    return root / name


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory, clip_cache):
    """{"flux-dev": folder, "flux-schnell": folder}"""
    root = tmp_path_factory.mktemp("flux")
    return {"flux-dev": _flux(root, clip_cache, True), "flux-schnell": _flux(root, clip_cache, False)}


def _add(args, capsys):
    from designerbox.cli import main

    assert main(["models", "add", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _load(model_id, home):
    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    return load_stable_diffusion(Registry(home).get(model_id), "cpu")


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


def test_a_single_file_flux_or_sd3_is_refused_with_the_way_out(sd_home, tmp_path):
    from safetensors.torch import save_file

    from designerbox.registry.user_checkpoints import add_checkpoint

    flux = tmp_path / "flux1-dev.safetensors"
    save_file({k: torch.zeros(1) for k in ["double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight",
                                           "guidance_in.in_layer.weight"]}, str(flux))
    with pytest.raises(ModelFileError, match=r"single-file FLUX\.1 dev checkpoint.*diffusers folder"):
        add_checkpoint(flux, sd_home, sd_home / "cache")


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
