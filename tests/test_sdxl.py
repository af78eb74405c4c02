"""User Stable Diffusion XL checkpoints, offline, on a tiny random-weight model.

The tiny SDXL (UNet 32-64 channels with 1 and 2 transformer layers, the text_time size conditioning,
a 2-level VAE, two 2-layer text encoders with the full 49,408-token vocabulary: CLIP ViT-L-like and
OpenCLIP bigG-like with projection) is saved twice: as a diffusers folder
(StableDiffusionXLPipeline.save_pretrained) and as one .safetensors file under the real SDXL key
names (`to_sdxl_ldm` below, the inverse of diffusers' single-file conversion; a full-size copy on the
meta device checks that diffusers reads those names back as SDXL base). Both go through
`designerbox models add` and `designerbox generate`, and our Euler matches diffusers' own
StableDiffusionXLPipeline.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_stable_diffusion import TINY_CLIP, TINY_VAE, clip_to_ldm, unet_to_ldm, vae_to_ldm
from tiny_checkpoints import add_model as _add
from tiny_checkpoints import packaged_scheduler, save_both, tiny_models

from designerbox.registry.files import ModelFileError

PROMPT, NEGATIVE = "a photo of a cat", "blurry"
SEEDS = [3, 4]
SIZE = 32          # pixels; latents are 16x16 (the tiny VAE has one downsampling)
CFG = 5.0

TINY_XL_UNET = dict(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(2, 4), transformer_layers_per_block=(1, 2), use_linear_projection=True,
    cross_attention_dim=64,                                        # 32 + 32: both encoders' states side by side
    addition_embed_type="text_time", addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=80,                      # 32 (pooled) + 6 * 8 (size/crop ids)
    norm_num_groups=32,
)
TINY_XL_VAE = dict(TINY_VAE, scaling_factor=0.13025)
TINY_CLIP_2 = dict(TINY_CLIP, hidden_act="gelu")  # CLIPTextModelWithProjection, projection_dim 32


# --- diffusers -> the original SDXL keys (sgm layout) ---------------------------------------------------

def sdxl_unet_to_ldm(state: dict, config) -> dict:
    """The SD UNet mapping, plus the size/crop embedding: add_embedding.linear_{1,2} -> label_emb.0.{0,2}."""
    label = {"add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2."}
    out = unet_to_ldm({k: v for k, v in state.items() if not k.startswith("add_embedding.")}, config)
    for key, value in state.items():
        for hf, sd in label.items():
            if key.startswith(hf):
                out["model.diffusion_model." + sd + key[len(hf):]] = value
    return out


def open_clip_to_ldm(state: dict, prefix: str = "conditioner.embedders.1.model.") -> dict:
    """CLIPTextModelWithProjection -> OpenCLIP names: q, k, v fused into in_proj, text_projection
    stored (width, embed_dim), i.e. transposed; plus OpenCLIP's logit_scale, which no text model uses."""
    top = {"text_model.embeddings.token_embedding.weight": "token_embedding.weight",
           "text_model.embeddings.position_embedding.weight": "positional_embedding",
           "text_model.final_layer_norm.weight": "ln_final.weight", "text_model.final_layer_norm.bias": "ln_final.bias"}
    renames = [("text_model.encoder.layers.", "transformer.resblocks."), (".self_attn.out_proj.", ".attn.out_proj."),
               (".layer_norm1.", ".ln_1."), (".layer_norm2.", ".ln_2."), (".mlp.fc1.", ".mlp.c_fc."),
               (".mlp.fc2.", ".mlp.c_proj.")]
    out = {prefix + "logit_scale": torch.tensor(4.6052)}
    for key, value in state.items():
        if key in top:
            out[prefix + top[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif ".self_attn.q_proj." in key:
            layer, kind = key.split(".self_attn.q_proj.")
            qkv = [state[f"{layer}.self_attn.{n}_proj.{kind}"] for n in "qkv"]
            new = layer.replace("text_model.encoder.layers.", "transformer.resblocks.")
            out[f"{prefix}{new}.attn.in_proj_{kind}"] = torch.cat(qkv)  # (3 width, ...)
        elif ".self_attn.k_proj." in key or ".self_attn.v_proj." in key or key.endswith("position_ids"):
            continue
        else:
            for a, b in renames:
                key = key.replace(a, b)
            out[prefix + key] = value
    return out


def to_sdxl_ldm(unet, vae, text_encoder, text_encoder_2) -> dict:
    return (sdxl_unet_to_ldm(unet.state_dict(), unet.config) | vae_to_ldm(vae.state_dict(), vae.config)
            | clip_to_ldm(text_encoder.state_dict(), "conditioner.embedders.0.transformer.")
            | open_clip_to_ldm(text_encoder_2.state_dict()))


# --- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory, clip_cache):
    """(diffusers folder, single file, config folder) of one tiny random-weight SDXL."""
    from diffusers import StableDiffusionXLPipeline

    from designerbox.registry.clip_tokenizer import clip_tokenizer

    unet, vae, text_encoder, text_encoder_2 = tiny_models(0, TINY_XL_UNET, TINY_XL_VAE, clip=TINY_CLIP,
                                                          clip_2=TINY_CLIP_2)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=clip_tokenizer(clip_cache), tokenizer_2=clip_tokenizer(clip_cache, "!"),
                                     unet=unet, scheduler=packaged_scheduler("sdxl"), force_zeros_for_empty_prompt=True,
                                     add_watermarker=False)
    return save_both(tmp_path_factory.mktemp("sdxl"), "tiny-sdxl", pipe,
                     to_sdxl_ldm(unet, vae, text_encoder, text_encoder_2))


def _generate(model_id, out, negative=NEGATIVE, sampler="euler"):
    from designerbox.cli import main

    args = ["generate", PROMPT, "--model", model_id, "--steps", "2", "--sampler", sampler, "--schedule", "karras",
            "--cfg", str(CFG), "--size", f"{SIZE}x{SIZE}", "--seed", "3", "-o", str(out), "--json", "--no-gallery"]
    return main(args + (["--negative", negative] if negative else []))


# --- tokenizers and detection -------------------------------------------------------------------------

def test_tokenizer_2_pads_with_exclamation_mark_as_sdxl_does(clip_cache, tmp_path):
    """SDXL's published tokenizer_2 pads with "!" (id 0), tokenizer with "<|endoftext|>" (49407); the
    same ids otherwise. copy_tokenizer writes the pair that `models add` gives a single file."""
    from transformers import CLIPTokenizer

    from designerbox.registry.clip_tokenizer import copy_tokenizer

    tok = CLIPTokenizer.from_pretrained(str(copy_tokenizer(clip_cache, tmp_path / "t1")), local_files_only=True)
    tok2 = CLIPTokenizer.from_pretrained(str(copy_tokenizer(clip_cache, tmp_path / "t2", "!")), local_files_only=True)
    ids = tok(["a cat"], padding="max_length", max_length=77, truncation=True).input_ids[0]
    ids2 = tok2(["a cat"], padding="max_length", max_length=77, truncation=True).input_ids[0]
    assert ids[:4] == ids2[:4] == [49406, 320, 2368, 49407]
    assert set(ids[4:]) == {49407} and set(ids2[4:]) == {0} and tok2.pad_token_id == 0
    with pytest.raises(ValueError, match="pad_token must be"):
        copy_tokenizer(clip_cache, tmp_path / "t3", "<pad>")


def test_sdxl_is_detected_in_both_formats(tiny_sdxl, tmp_path):
    from designerbox.registry.families import UnknownFamilyError, detect

    folder, single, _ = tiny_sdxl
    assert detect(folder).id == "sdxl" and detect(single).id == "sdxl"
    # without model_index.json: text_encoder_2/ + tokenizer_2/ (and text_encoder/ for the base)
    bare = tmp_path / "bare"
    shutil.copytree(folder, bare, ignore=shutil.ignore_patterns("*.safetensors", "model_index.json"))
    assert detect(bare).id == "sdxl"
    shutil.rmtree(bare / "text_encoder")
    assert detect(bare).id == "sdxl-refiner"
    shutil.rmtree(bare / "tokenizer_2")
    with pytest.raises(UnknownFamilyError, match="no model_index.json.*known families: sd15, sd2, sdxl"):
        detect(bare)
    # a refiner saved with model_index.json lists no first text encoder
    index = json.loads((folder / "model_index.json").read_text())
    (bare / "model_index.json").write_text(json.dumps(index | {"text_encoder": [None, None]}))
    assert detect(bare).id == "sdxl-refiner"


def test_the_single_file_holds_the_real_sdxl_key_names(tiny_sdxl):
    from safetensors import safe_open

    with safe_open(str(tiny_sdxl[1]), "pt") as f:
        keys = set(f.keys())
    for key in ["model.diffusion_model.label_emb.0.0.weight", "model.diffusion_model.input_blocks.4.1.proj_in.weight",
                "model.diffusion_model.middle_block.1.transformer_blocks.1.attn2.to_k.weight",
                "first_stage_model.decoder.mid.attn_1.q.weight",
                "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
                "conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight",
                "conditioner.embedders.1.model.text_projection", "conditioner.embedders.1.model.positional_embedding"]:
        assert key in keys, key
    assert not any(k.startswith(("unet.", "text_encoder", "vae.", "cond_stage_model.")) for k in keys)


def test_the_packaged_sdxl_config_is_the_published_architecture():
    """On the meta device (no memory): the parameter counts of SDXL base 1.0's networks, our inverse
    key mapping gives names diffusers recognises as SDXL base (infer_diffusers_model_type "xl_base"),
    and diffusers' converters map them back onto exactly the networks' tensors."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
        infer_diffusers_model_type,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from designerbox.registry.families import family_from_keys
    from designerbox.registry.user_checkpoints import packaged_config

    config = packaged_config("sdxl")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(config / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(config / "vae")))
        te = CLIPTextModel(CLIPTextConfig.from_json_file(str(config / "text_encoder" / "config.json")))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_json_file(str(config / "text_encoder_2" / "config.json")))
    counts = [sum(p.numel() for p in n.parameters()) for n in (unet, vae, te, te2)]
    assert counts == [2_567_463_684, 83_653_863, 123_060_480, 694_659_840]
    ldm = to_sdxl_ldm(unet, vae, te, te2)
    assert family_from_keys(list(ldm)).id == "sdxl" and infer_diffusers_model_type(ldm) == "xl_base"
    assert set(convert_ldm_unet_checkpoint(ldm, unet.config)) == set(unet.state_dict())
    assert set(convert_ldm_vae_checkpoint(ldm, vae.config)) == set(vae.state_dict())
    clip = {k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(ldm).items()}
    assert set(clip) == set(te.state_dict())
    assert set(convert_open_clip_checkpoint(te2, ldm, prefix="conditioner.embedders.1.model.")) == set(te2.state_dict())


# --- add, load, generate -------------------------------------------------------------------------------

def test_sdxl_single_file_is_added_and_generates(tiny_sdxl, sd_home, tmp_path, capsys):
    from designerbox.registry.files import file_sha256

    folder, single, config = tiny_sdxl
    report = _add([single, "--config", config, "--id", "tiny-xl-single"], capsys)
    sha = file_sha256(single)
    assert report["family"] == "sdxl" and report["sha256"] == sha and report["hash"] == sha[:10]
    model_dir = sd_home / "models" / "tiny-xl-single"
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["native_size"] == [1024, 1024] and manifest["prediction"] == "eps"
    assert manifest["defaults"] == {"sampler": "dpmpp_2m", "schedule": "karras", "steps": 30, "cfg_scale": 7.0}
    assert manifest["files"][0]["sha256"] == sha and manifest["text_encoder"] == "clip-vit-l-14+openclip-vit-bigg-14"
    pads = [json.loads((model_dir / "config" / t / "special_tokens_map.json").read_text())["pad_token"]
            for t in ("tokenizer", "tokenizer_2")]
    assert pads == ["<|endoftext|>", "!"]
    assert _generate("tiny-xl-single", tmp_path / "out", sampler="dpmpp_2m") == 0
    record = json.loads(capsys.readouterr().out)[0]["record"]
    assert record["model"]["sha256"] == sha and record["model"]["family"] == "sdxl"
    assert record["native_size"] == [SIZE, SIZE] and record["conditioning"]["negative_prompt"] == NEGATIVE


def test_sdxl_single_file_and_folder_give_the_same_image(tiny_sdxl, sd_home, tmp_path, capsys):
    """With a negative prompt and with none (zeros for the unconditional branch): the two formats of
    the same weights draw the same pixels, and the empty negative prompt changes the image."""
    import numpy as np
    from PIL import Image

    folder, single, config = tiny_sdxl
    _add([single, "--config", config, "--id", "tiny-xl-single"], capsys)
    _add([folder, "--id", "tiny-xl-folder"], capsys)
    images = {}
    for negative in (NEGATIVE, None):
        for model_id in ("tiny-xl-single", "tiny-xl-folder"):
            assert _generate(model_id, tmp_path / f"{model_id}-{negative}", negative=negative) == 0
            path = json.loads(capsys.readouterr().out)[0]["path"]
            images[model_id, negative] = np.asarray(Image.open(path)).astype(int)
    for negative in (NEGATIVE, None):
        a, b = images["tiny-xl-single", negative], images["tiny-xl-folder", negative]
        assert a.shape == (SIZE, SIZE, 3) and a.std() > 1
        assert np.abs(a - b).max() <= 1
    assert np.abs(images["tiny-xl-folder", NEGATIVE] - images["tiny-xl-folder", None]).max() > 1


@pytest.mark.parametrize("negative", [NEGATIVE, None])
def test_our_euler_matches_diffusers_sdxl_pipeline(tiny_sdxl, sd_home, capsys, negative):
    """The same weights, prompt, noise and steps through diffusers' StableDiffusionXLPipeline with
    EulerDiscreteScheduler (Karras sigmas, linspace spacing). No negative prompt: zeros for the
    unconditional branch on both sides (force_zeros_for_empty_prompt). In [0, 255] pixel units, max
    0.05 (float32 rounding; the same algorithm). The callback sees every step."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    from designerbox.pipelines.stable_diffusion_xl import LatentDiffusionXL, sdxl_text_to_image
    from designerbox.pipelines.text_to_image import initial_noise
    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    folder, single, config = tiny_sdxl
    _add([single, "--config", config, "--id", "tiny-xl-single"], capsys)
    ours = load_stable_diffusion(Registry(sd_home).get("tiny-xl-single"), "cpu")
    assert isinstance(ours, LatentDiffusionXL) and ours.tokenizer_2.pad_token_id == 0
    steps_seen = []
    mine = sdxl_text_to_image(ours, PROMPT, negative, width=SIZE, height=SIZE, steps=2, sampler="euler",
                              schedule="karras", cfg_scale=CFG, seeds=SEEDS, callback=lambda i: steps_seen.append(i["i"]))
    assert steps_seen == [0, 1]
    pipe = StableDiffusionXLPipeline.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True,
                                                        timestep_spacing="linspace")
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe([PROMPT] * len(SEEDS), negative_prompt=[negative] * len(SEEDS) if negative else None,
                  height=SIZE, width=SIZE, num_inference_steps=2, guidance_scale=CFG,
                  latents=initial_noise(SEEDS, (4, SIZE // 2, SIZE // 2)), output_type="pt").images
    assert mine.shape == theirs.shape == (len(SEEDS), 3, SIZE, SIZE)
    assert (mine * 255).std() > 1
    diff = (mine - theirs).abs() * 255
    assert diff.max() < 0.05, diff.max()


def test_sdxl_speed_ups_and_half_precision(tiny_sdxl, sd_home, capsys):
    """The speed-ups of pipelines/speed.py keep the image (channels-last, fused QKV: within 0.01 of a
    pixel); in half precision the UNet and text encoders follow the dtype and the VAE stays float32
    (force_upcast: SDXL's VAE overflows in float16)."""
    from designerbox.pipelines.speed import speed_up
    from designerbox.pipelines.stable_diffusion_xl import sdxl_text_to_image
    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    _add([tiny_sdxl[0], "--id", "tiny-xl-folder"], capsys)
    manifest = Registry(sd_home).get("tiny-xl-folder")
    kwargs = dict(width=SIZE, height=SIZE, steps=2, sampler="dpmpp_2m", schedule="karras", cfg_scale=CFG, seeds=SEEDS)
    plain = sdxl_text_to_image(load_stable_diffusion(manifest, "cpu"), PROMPT, NEGATIVE, **kwargs)
    fast = load_stable_diffusion(manifest, "cpu")
    assert speed_up(fast, channels_last=True, fuse_qkv=True)["fuse_qkv"] is True
    assert ((sdxl_text_to_image(fast, PROMPT, NEGATIVE, **kwargs) - plain).abs() * 255).max() < 0.01
    half = load_stable_diffusion(manifest, "cpu", dtype=torch.bfloat16)
    assert half.unet.dtype == half.text_encoder_2.dtype == torch.bfloat16 and half.vae.dtype == torch.float32
    image = sdxl_text_to_image(half, PROMPT, None, **dict(kwargs, steps=1))
    assert torch.isfinite(image).all() and image.shape == (2, 3, SIZE, SIZE)


# --- bad files ----------------------------------------------------------------------------------------

def test_an_sdxl_file_without_its_size_embedding_is_named(tiny_sdxl, sd_home, tmp_path):
    from safetensors.torch import load_file, save_file

    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import add_checkpoint, load_stable_diffusion

    state = {k: v for k, v in load_file(str(tiny_sdxl[1])).items() if ".label_emb." not in k}
    broken = tmp_path / "no-label-emb.safetensors"
    save_file(state, str(broken))
    add_checkpoint(broken, sd_home, sd_home / "cache", config=tiny_sdxl[2])
    with pytest.raises(ModelFileError, match=r"\(unet\): the file lacks tensor 'label_emb\.0\.0\.weight'"):
        load_stable_diffusion(Registry(sd_home).get("no-label-emb"), "cpu")


def test_a_component_folder_with_an_fp16_variant_reads_the_full_weights(tmp_path):
    """Published folders keep name.safetensors and name.fp16.safetensors side by side."""
    from designerbox.registry.user_checkpoints import _component_file

    folder = tmp_path / "unet"
    folder.mkdir()
    (folder / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"")
    assert _component_file(folder).name == "diffusion_pytorch_model.fp16.safetensors"
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    assert _component_file(folder).name == "diffusion_pytorch_model.safetensors"
    (folder / "other.safetensors").write_bytes(b"")
    with pytest.raises(ModelFileError, match="should hold one .safetensors file"):
        _component_file(folder)


def test_an_sdxl_lora_with_sgm_block_names_merges(tiny_sdxl, sd_home, capsys):
    """kohya names SDXL's UNet layers by SGM blocks (input_blocks_4_1 = down_blocks.1.attentions.0 with
    two layers per block); text encoder layers as lora_te1_ / lora_te2_."""
    from safetensors.torch import save_file

    from designerbox.pipelines.lora import set_loras
    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    _add([tiny_sdxl[0], "--id", "tiny-xl-folder"], capsys)
    model = load_stable_diffusion(Registry(sd_home).get("tiny-xl-folder"), "cpu")
    g = torch.Generator().manual_seed(0)
    state = {}
    for prefix, (out_ch, in_ch) in {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q": (64, 64),
                                    "lora_unet_middle_block_1_transformer_blocks_0_attn2_to_k": (64, 64),
                                    "lora_unet_output_blocks_0_1_transformer_blocks_0_attn1_to_out_0": (64, 64),
                                    "lora_te1_text_model_encoder_layers_0_self_attn_q_proj": (32, 32),
                                    "lora_te2_text_model_encoder_layers_1_mlp_fc1": (37, 32)}.items():
        state[f"{prefix}.lora_down.weight"] = torch.randn(2, in_ch, generator=g)
        state[f"{prefix}.lora_up.weight"] = torch.randn(out_ch, 2, generator=g)
    path = sd_home / "loras" / "xl-style.safetensors"
    path.parent.mkdir(parents=True)
    save_file(state, str(path))
    q = model.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1.to_q
    before = q.weight.clone()
    assert set_loras(model, [(path, 1.0)]) == [{"name": "xl-style", "strength": 1.0, "layers": 5}]
    p = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"  # no alpha: alpha = rank, scale 1
    assert torch.allclose(q.weight, before + state[f"{p}.lora_up.weight"] @ state[f"{p}.lora_down.weight"], atol=1e-5)
    set_loras(model, [])
    assert torch.equal(q.weight, before)
