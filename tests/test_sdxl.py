"""What is particular to user Stable Diffusion XL checkpoints, offline, on a tiny random-weight model: the
second tokenizer, detection, the real SDXL key names, the packaged config, our Euler against diffusers' own
StableDiffusionXLPipeline, the speed-ups and half precision, and a file without its size embedding.

The tiny SDXL (UNet 32-64 channels with 1 and 2 transformer layers, the text_time size conditioning,
a 2-level VAE, two 2-layer text encoders with the full 49,408-token vocabulary: CLIP ViT-L-like and
OpenCLIP bigG-like with projection) is the tiny_sdxl fixture of conftest.py, saved twice: as a diffusers
folder (StableDiffusionXLPipeline.save_pretrained) and as one .safetensors file under the real SDXL key
names (`to_sdxl_ldm` of tiny_checkpoints.py, the inverse of diffusers' single-file conversion; a full-size
copy on the meta device checks that diffusers reads those names back as SDXL base). Adding and generating
from both: test_stable_diffusion.py; SDXL LoRA: test_lora.py; the refiner: test_sdxl_refiner.py.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tiny_checkpoints import CFG, NEGATIVE, PROMPT, SEEDS, SIZE, diffusers_images, karras_euler, packaged_networks
from tiny_checkpoints import add_model as _add
from tiny_checkpoints import parameter_counts, to_sdxl_ldm

from designerbox.registry.files import ModelFileError

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
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
        infer_diffusers_model_type,
    )

    from designerbox.registry.families import family_from_keys

    unet, vae, te, te2 = packaged_networks("sdxl")
    assert parameter_counts(unet, vae, te, te2) == [2_567_463_684, 83_653_863, 123_060_480, 694_659_840]
    ldm = to_sdxl_ldm(unet, vae, te, te2)
    assert family_from_keys(list(ldm)).id == "sdxl" and infer_diffusers_model_type(ldm) == "xl_base"
    assert set(convert_ldm_unet_checkpoint(ldm, unet.config)) == set(unet.state_dict())
    assert set(convert_ldm_vae_checkpoint(ldm, vae.config)) == set(vae.state_dict())
    clip = {k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(ldm).items()}
    assert set(clip) == set(te.state_dict())
    assert set(convert_open_clip_checkpoint(te2, ldm, prefix="conditioner.embedders.1.model.")) == set(te2.state_dict())


# --- against diffusers, speed-ups ----------------------------------------------------------------------

@pytest.mark.parametrize("negative", [NEGATIVE, None])
def test_our_euler_matches_diffusers_sdxl_pipeline(tiny_sdxl, sd_home, capsys, negative):
    """The same weights, prompt, noise and steps through diffusers' StableDiffusionXLPipeline with
    EulerDiscreteScheduler (Karras sigmas, linspace spacing). No negative prompt: zeros for the
    unconditional branch on both sides (force_zeros_for_empty_prompt). In [0, 255] pixel units, max
    0.05 (float32 rounding; the same algorithm). The callback sees every step."""
    from diffusers import StableDiffusionXLPipeline

    from designerbox.pipelines.stable_diffusion_xl import LatentDiffusionXL, sdxl_text_to_image
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
    pipe.scheduler = karras_euler(pipe.scheduler)
    theirs = diffusers_images(pipe, negative)
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
