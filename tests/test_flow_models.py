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
from test_stable_diffusion import TINY_CLIP, vae_to_ldm

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
                                        attention_head_dim=64, num_attention_heads=1, caption_projection_dim=64,
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
                                         attention_head_dim=32, num_attention_heads=1, joint_attention_dim=64,
                                         pooled_projection_dim=32, guidance_embeds=guidance, axes_dims_rope=(4, 14, 14))
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


# --- diffusers -> the original single-file layouts (what diffusers' converters read) ---------------------------

def sd3_to_original(state: dict) -> dict:
    """SD3Transformer2DModel -> the reference MMDiT names under model.diffusion_model. (inverse of diffusers'
    convert_sd3_transformer_checkpoint_to_diffusers): fused qkv, x_block / context_block, the final AdaLN's
    and the last context block's modulation halves swapped back."""
    from designerbox.registry.flow_single_file import swap_scale_shift

    out = {"pos_embed": state["pos_embed.pos_embed"]}
    top = {"pos_embed.proj": "x_embedder.proj", "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
           "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2", "context_embedder": "context_embedder",
           "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
           "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2", "proj_out": "final_layer.linear"}
    block = {"attn.to_out.0": "x_block.attn.proj", "attn.to_add_out": "context_block.attn.proj",
             "norm1.linear": "x_block.adaLN_modulation.1", "norm1_context.linear": "context_block.adaLN_modulation.1",
             "ff.net.0.proj": "x_block.mlp.fc1", "ff.net.2": "x_block.mlp.fc2",
             "ff_context.net.0.proj": "context_block.mlp.fc1", "ff_context.net.2": "context_block.mlp.fc2"}
    layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks."))
    for suffix in (".weight", ".bias"):
        for a, b in top.items():
            out[b + suffix] = state[a + suffix]
        out["final_layer.adaLN_modulation.1" + suffix] = swap_scale_shift(state["norm_out.linear" + suffix])
        for i in range(layers):
            p, q = f"transformer_blocks.{i}.", f"joint_blocks.{i}."
            for a, b in block.items():
                if p + a + suffix in state:
                    w = state[p + a + suffix]
                    last_context = i == layers - 1 and a == "norm1_context.linear"
                    out[q + b + suffix] = swap_scale_shift(w) if last_context else w
            out[q + "x_block.attn.qkv" + suffix] = torch.cat([state[f"{p}attn.to_{n}{suffix}"] for n in "qkv"])
            out[q + "context_block.attn.qkv" + suffix] = torch.cat(
                [state[f"{p}attn.add_{n}_proj{suffix}"] for n in "qkv"])
    return {"model.diffusion_model." + k: v for k, v in out.items()}


def flux_to_bfl(state: dict) -> dict:
    """FluxTransformer2DModel -> Black Forest Labs' names (inverse of flux_transformer_from_bfl)."""
    from designerbox.registry.flow_single_file import swap_scale_shift

    out = {}
    top = {"time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
           "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
           "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
           "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
           "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
           "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
           "context_embedder": "txt_in", "x_embedder": "img_in", "proj_out": "final_layer.linear"}
    double = {"norm1.linear": "img_mod.lin", "norm1_context.linear": "txt_mod.lin", "attn.to_out.0": "img_attn.proj",
              "attn.to_add_out": "txt_attn.proj", "ff.net.0.proj": "img_mlp.0", "ff.net.2": "img_mlp.2",
              "ff_context.net.0.proj": "txt_mlp.0", "ff_context.net.2": "txt_mlp.2"}
    norms = {"attn.norm_q": "img_attn.norm.query_norm", "attn.norm_k": "img_attn.norm.key_norm",
             "attn.norm_added_q": "txt_attn.norm.query_norm", "attn.norm_added_k": "txt_attn.norm.key_norm"}
    doubles = {int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")}
    singles = {int(k.split(".")[1]) for k in state if k.startswith("single_transformer_blocks.")}
    for suffix in (".weight", ".bias"):
        out.update({b + suffix: state[a + suffix] for a, b in top.items() if a + suffix in state})
        out["final_layer.adaLN_modulation.1" + suffix] = swap_scale_shift(state["norm_out.linear" + suffix])
        for i in doubles:
            p, q = f"transformer_blocks.{i}.", f"double_blocks.{i}."
            out.update({q + b + suffix: state[p + a + suffix] for a, b in double.items()})
            out[q + "img_attn.qkv" + suffix] = torch.cat([state[f"{p}attn.to_{n}{suffix}"] for n in "qkv"])
            out[q + "txt_attn.qkv" + suffix] = torch.cat([state[f"{p}attn.add_{n}_proj{suffix}"] for n in "qkv"])
        for i in singles:
            p, q = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
            out[q + "modulation.lin" + suffix] = state[p + "norm.linear" + suffix]
            out[q + "linear2" + suffix] = state[p + "proj_out" + suffix]
            out[q + "linear1" + suffix] = torch.cat([state[p + n + suffix] for n in
                                                     ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")])
    for i in doubles:
        out.update({f"double_blocks.{i}.{b}.scale": state[f"transformer_blocks.{i}.{a}.weight"] for a, b in norms.items()})
    for i in singles:
        out[f"single_blocks.{i}.norm.query_norm.scale"] = state[f"single_transformer_blocks.{i}.attn.norm_q.weight"]
        out[f"single_blocks.{i}.norm.key_norm.scale"] = state[f"single_transformer_blocks.{i}.attn.norm_k.weight"]
    return out


def text_encoder_keys(state: dict, prefix: str) -> dict:
    """A transformers text encoder under ComfyUI's text_encoders.<name>.transformer. prefix (CLIP's text_model.
    level kept, as checkpoints name it)."""
    out = {}
    for k, v in state.items():
        if k.endswith("position_ids"):
            continue
        clip_inner = not k.startswith(("text_model.", "text_projection", "shared.", "encoder."))
        out[prefix + ("text_model." if clip_inner else "") + k] = v
    return out


def _single(folder, kind: str, out, transformer_only: bool = False):
    """A single file of a saved tiny folder: its transformer in the original layout (bare BFL keys for FLUX
    with transformer_only), plus, unless transformer_only, its VAE and text encoders as ComfyUI saves them."""
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file, save_file

    tr = load_file(str(folder / "transformer" / "diffusion_pytorch_model.safetensors"))
    if kind == "sd3":
        state = sd3_to_original(tr)
    else:
        state = flux_to_bfl(tr)
        state = state if transformer_only else {"model.diffusion_model." + k: v for k, v in state.items()}
    if not transformer_only:
        vae = AutoencoderKL.from_pretrained(str(folder / "vae"), local_files_only=True)
        state |= vae_to_ldm(vae.state_dict(), vae.config)
        names = ({"text_encoder": "clip_l", "text_encoder_2": "clip_g", "text_encoder_3": "t5xxl"} if kind == "sd3"
                 else {"text_encoder": "clip_l", "text_encoder_2": "t5xxl"})
        for name, short in names.items():
            te = load_file(str(next((folder / name).glob("*.safetensors"))))
            state |= text_encoder_keys(te, f"text_encoders.{short}.transformer.")
    save_file({k: v.contiguous() for k, v in state.items()}, str(out))
    return out


def _configs_only(folder, out):
    """The folder's configs and tokenizers without weights or the transformer's config (read from the file)."""
    shutil.copytree(folder, out, ignore=shutil.ignore_patterns("*.safetensors", "transformer"))
    return out


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


def test_a_transformer_only_flux_file_names_what_to_add(sd_home, tmp_path):
    from safetensors.torch import save_file

    from designerbox.registry.user_checkpoints import add_checkpoint

    flux = tmp_path / "flux1-dev.safetensors"
    save_file({k: torch.zeros(1) for k in ["double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight",
                                           "guidance_in.in_layer.weight"]}, str(flux))
    with pytest.raises(ModelFileError, match=r"holds transformer of flux-dev but not vae, text_encoder, text_encoder_2: "
                                             r"add it with --config FOLDER"):
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


# --- single files in the original layouts ----------------------------------------------------------------------

@pytest.mark.parametrize("which, transformer_only", [("sd3", False), ("flux-dev", True), ("flux-schnell", False)])
def test_a_single_file_gives_the_folders_image(tiny_sd3, tiny_flux, sd_home, tmp_path, capsys, which, transformer_only):
    """SD3 with every network in the file (the transformer's config read from its shapes, the other configs
    and the T5 tokenizer from a folder without weights), FLUX dev as BFL ships it (the transformer alone,
    the rest from the diffusers folder), FLUX schnell as a ComfyUI checkpoint; each draws what its folder does."""
    from designerbox.pipelines.sampling import draw
    from designerbox.registry.discovery import Registry
    from designerbox.registry.families import detect

    folder = tiny_sd3 if which == "sd3" else tiny_flux[which]
    single = _single(folder, "sd3" if which == "sd3" else "flux", tmp_path / f"{which}.safetensors", transformer_only)
    assert detect(single).id == which
    config = folder if transformer_only else _configs_only(folder, tmp_path / "configs")
    report = _add([single, "--config", config, "--id", "single"], capsys)
    _add([folder, "--id", "folder"], capsys)
    manifest = Registry(sd_home).get("single")
    assert report["family"] == which and manifest.files[0].path == str(single.resolve())
    kwargs = dict(width=SIZE, height=SIZE, steps=2, sampler="euler", schedule="simple", seeds=SEEDS,
                  cfg_scale=3.5 if which == "flux-dev" else CFG)
    a = draw(_load("single", sd_home), PROMPT, NEGATIVE, **kwargs)
    b = draw(_load("folder", sd_home), PROMPT, NEGATIVE, **kwargs)
    assert (a * 255).std() > 1 and ((a - b).abs() * 255).max() < 1e-3


def test_a_single_file_without_the_t5_tokenizer_names_what_to_add(tiny_sd3, sd_home, tmp_path):
    from designerbox.registry.user_checkpoints import add_checkpoint

    single = _single(tiny_sd3, "sd3", tmp_path / "sd3.safetensors")
    with pytest.raises(ModelFileError, match=r"T5's tokenizer.*--config FOLDER.*tokenizer_3/tokenizer\.json"):
        add_checkpoint(single, sd_home, sd_home / "cache")


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_the_full_size_layouts_convert_as_diffusers_does(kind):
    """On the meta device, at the published sizes (SD3 medium; FLUX.1 dev): our test writer's original layout
    is what diffusers' own converter reads back into exactly the model's tensors, the transformer's config
    read from those shapes is the published one, and (FLUX) our any-width converter agrees with diffusers'."""
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import (
        convert_flux_transformer_checkpoint_to_diffusers,
        convert_sd3_transformer_checkpoint_to_diffusers,
    )

    from designerbox.registry.flow_single_file import flux_transformer_from_bfl, transformer_config

    if kind == "sd3":
        config = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24,
                      attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
                      caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=192)
        with torch.device("meta"):
            net = SD3Transformer2DModel(**config)
        original = sd3_to_original(net.state_dict())
        theirs = convert_sd3_transformer_checkpoint_to_diffusers(dict(original))
        ours = theirs
    else:
        config = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                      num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                      guidance_embeds=True, axes_dims_rope=(16, 56, 56))
        with torch.device("meta"):
            net = FluxTransformer2DModel(**config)
        original = flux_to_bfl(net.state_dict())
        theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(original))
        ours = flux_transformer_from_bfl(original)
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in theirs.items()} == expected
    assert {k: tuple(v.shape) for k, v in ours.items()} == expected
    derived = transformer_config("sd3" if kind == "sd3" else "flux-dev", {k: list(v.shape) for k, v in original.items()})
    assert {k: derived[k] for k in config} == {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


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
