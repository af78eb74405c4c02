"""User Stable Diffusion 1.x checkpoints, offline, on a tiny random-weight model.

The tiny model (UNet 32-64 channels, VAE 2 levels, CLIP text encoder of 2 layers with the full
49,408-token vocabulary) is saved twice: as a diffusers folder, and as one .safetensors file in the
original LDM key layout that A1111 and ComfyUI users keep (written with the inverse of diffusers'
conversion, `to_ldm` below, the mapping of diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py
generalised to any number of levels and layers). Both go through `designerbox models add` and
`designerbox generate`, and our samplers on them match diffusers' own StableDiffusionPipeline.

The CLIP tokenizer needs `open-clip-torch==3.3.0` from PyPI (pip download, cached per session: the
clip_cache fixture of conftest.py); tests that need it are skipped when pip cannot fetch it.
"""

from __future__ import annotations

import json

import pytest
import torch
from tiny_checkpoints import add_model as _add
from tiny_checkpoints import packaged_scheduler, save_both, tiny_models

from designerbox.registry.files import ModelFileError

PROMPT, NEGATIVE = "a photo of a cat", "blurry"
SEEDS = [3, 4]
SIZE = 32          # pixels; latents are 16x16 (the tiny VAE has one downsampling)
CFG = 5.0

TINY_UNET = dict(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32,
)
TINY_VAE = dict(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                norm_num_groups=32, sample_size=32)
TINY_CLIP = dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                 max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=32)


# --- diffusers -> original LDM keys (the layout of SD 1.x single files) -----------------------------

def unet_to_ldm(state: dict, config) -> dict:
    L, levels = config.layers_per_block, len(config.block_out_channels)
    prefixes = [("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
                ("conv_in.", "input_blocks.0.0."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2."),
                ("mid_block.attentions.0.", "middle_block.1.")]
    prefixes += [(f"mid_block.resnets.{j}.", f"middle_block.{2 * j}.") for j in range(2)]
    for i in range(levels):
        for j in range(L):
            prefixes.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{i * (L + 1) + j + 1}.0."))
            prefixes.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{i * (L + 1) + j + 1}.1."))
        prefixes.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(i + 1) * (L + 1)}.0.op."))
        has_attn = "CrossAttn" in config.up_block_types[i]
        for j in range(L + 1):
            prefixes.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{i * (L + 1) + j}.0."))
            prefixes.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{i * (L + 1) + j}.1."))
        prefixes.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{i * (L + 1) + L}.{2 if has_attn else 1}."))
    resnet = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
              ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
    out = {}
    for key, value in state.items():
        new = key
        for hf, sd in prefixes:
            if key.startswith(hf):
                new = sd + key[len(hf):]
                if ".resnets." in hf:
                    for a, b in resnet:
                        new = new.replace(f"{sd}{a}.", f"{sd}{b}.")
                break
        else:
            raise KeyError(f"no LDM name for {key}")
        out["model.diffusion_model." + new] = value
    return out


def vae_to_ldm(state: dict, config) -> dict:
    levels, L = len(config.block_out_channels), config.layers_per_block
    prefixes = [("encoder.mid_block.attentions.0.", "encoder.mid.attn_1."),
                ("decoder.mid_block.attentions.0.", "decoder.mid.attn_1."),
                ("encoder.conv_norm_out.", "encoder.norm_out."), ("decoder.conv_norm_out.", "decoder.norm_out.")]
    for part in ("encoder", "decoder"):
        prefixes += [(f"{part}.mid_block.resnets.{j}.", f"{part}.mid.block_{j + 1}.") for j in range(2)]
    for i in range(levels):
        prefixes += [(f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.") for j in range(L)]
        prefixes.append((f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."))
        up = levels - 1 - i
        prefixes += [(f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{up}.block.{j}.") for j in range(L + 1)]
        prefixes.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{up}.upsample."))
    attn = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out.")]
    out = {}
    for key, value in state.items():
        new = key
        for hf, sd in prefixes:
            if key.startswith(hf):
                rest = key[len(hf):]
                if ".attentions." in hf:
                    for a, b in attn:
                        if rest.startswith(a):
                            rest = b + rest[len(a):]
                    if value.ndim == 2:
                        value = value[:, :, None, None]  # linear -> 1x1 conv
                new = sd + rest.replace("conv_shortcut.", "nin_shortcut.")
                break
        out["first_stage_model." + new] = value
    return out


def clip_to_ldm(state: dict, prefix: str) -> dict:
    """CLIP ViT-L under its transformers names, text_model.* (transformers >= 5.6 builds CLIPTextModel
    without that level, checkpoints keep it)."""
    return {prefix + ("" if k.startswith("text_model.") else "text_model.") + k: v for k, v in state.items()}


def to_ldm(unet, vae, text_encoder) -> dict:
    te = clip_to_ldm(text_encoder.state_dict(), "cond_stage_model.transformer.")
    return unet_to_ldm(unet.state_dict(), unet.config) | vae_to_ldm(vae.state_dict(), vae.config) | te


# --- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory, clip_cache):
    """(diffusers folder, single file, config folder) of one tiny random-weight SD 1.x model."""
    from diffusers import StableDiffusionPipeline

    from designerbox.registry.clip_tokenizer import clip_tokenizer

    unet, vae, text_encoder, _ = tiny_models(0, TINY_UNET, TINY_VAE, clip=TINY_CLIP)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(clip_cache),
                                   unet=unet, scheduler=packaged_scheduler("sd15"), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    return save_both(tmp_path_factory.mktemp("sd"), "tiny-sd15", pipe, to_ldm(unet, vae, text_encoder))


# --- the tokenizer -----------------------------------------------------------------------------------

def test_clip_tokenizer_built_offline_gives_clip_ids(clip_cache):
    from designerbox.registry.clip_tokenizer import clip_tokenizer

    tok = clip_tokenizer(clip_cache)
    assert len(tok) == 49408 and tok.model_max_length == 77
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok("A photo of an astronaut riding a horse on mars").input_ids == [
        49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407]
    padded = tok(["a cat"], padding="max_length", max_length=77, truncation=True).input_ids[0]
    assert padded[:4] == [49406, 320, 2368, 49407] and len(padded) == 77 and set(padded[3:]) == {49407}


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path):
    from designerbox.registry.clip_tokenizer import TokenizerAssetError, read_bpe_merges

    fake = tmp_path / "open_clip_torch-3.3.0-py3-none-any.whl"
    fake.write_bytes(b"PK\x03\x04 not the wheel")
    with pytest.raises(TokenizerAssetError, match="sha256"):
        read_bpe_merges(fake)


# --- family detection ---------------------------------------------------------------------------------

def _header_only(path, keys):
    """A valid safetensors file whose tensors are one float each: enough for detection."""
    from safetensors.torch import save_file

    save_file({k: torch.zeros(1) for k in keys}, str(path))
    return path


@pytest.mark.parametrize("keys, family", [
    (["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.transformer.text_model.x"], "sd15"),
    (["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.model.ln_final.weight"], "sd2"),
    (["model.diffusion_model.input_blocks.0.0.weight", "conditioner.embedders.0.transformer.x",
      "conditioner.embedders.1.model.ln_final.weight"], "sdxl"),
    (["model.diffusion_model.input_blocks.0.0.weight", "conditioner.embedders.0.model.ln_final.weight"],
     "sdxl-refiner"),
    (["model.diffusion_model.joint_blocks.0.x", "model.diffusion_model.x_embedder.proj.weight"], "sd3"),
    (["double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight", "guidance_in.in_layer.weight"],
     "flux-dev"),
    (["model.diffusion_model.double_blocks.0.x", "model.diffusion_model.single_blocks.0.x"], "flux-schnell"),
])
def test_family_is_read_from_the_tensor_names(tmp_path, keys, family):
    from designerbox.registry.families import detect

    found = detect(_header_only(tmp_path / "m.safetensors", keys))
    assert found.id == family
    if family == "sd2":
        assert found.prediction == "v" and "assumed" in found.note


def test_an_unknown_layout_names_what_it_found_and_the_known_families(tmp_path):
    from designerbox.registry.families import UnknownFamilyError, detect

    with pytest.raises(UnknownFamilyError, match=r"encoder\.layer.*known families: sd15, sd2, sdxl"):
        detect(_header_only(tmp_path / "bert.safetensors", ["encoder.layer.0.weight", "pooler.dense.weight"]))


def test_a_diffusers_folder_is_recognised(tiny_sd):
    from designerbox.registry.families import detect

    assert detect(tiny_sd[0]).id == "sd15"


# --- add, load, generate -------------------------------------------------------------------------------

def _generate(model_id, out, sampler="euler", extra=()):
    from designerbox.cli import main

    return main(["generate", PROMPT, "--model", model_id, "--steps", "2", "--sampler", sampler, "--schedule",
                 "karras", "--cfg", str(CFG), "--size", f"{SIZE}x{SIZE}", "--seed", "3", "--negative", NEGATIVE,
                 "-o", str(out), "--json", "--no-gallery", *extra])


def test_single_file_is_added_and_generates(tiny_sd, sd_home, tmp_path, capsys):
    from designerbox.registry.files import file_sha256

    folder, single, config = tiny_sd
    report = _add([single, "--config", config, "--id", "tiny-single"], capsys)
    sha = file_sha256(single)
    assert report["family"] == "sd15" and report["sha256"] == sha and report["hash"] == sha[:10]
    manifest = json.loads((sd_home / "models" / "tiny-single" / "manifest.json").read_text())
    assert manifest["licence"] == "unknown (user-supplied)" and manifest["native_size"] == [512, 512]
    assert manifest["kind"] == "diffusion" and manifest["files"][0]["sha256"] == sha
    assert _generate("tiny-single", tmp_path / "out", sampler="dpmpp_2m") == 0
    record = json.loads(capsys.readouterr().out)[0]["record"]
    assert record["model"]["sha256"] == sha and record["model"]["hash"] == sha[:10]
    assert record["model"]["family"] == "sd15" and record["native_size"] == [SIZE, SIZE]


def test_single_file_and_folder_give_the_same_image(tiny_sd, sd_home, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    folder, single, config = tiny_sd
    _add([single, "--config", config, "--id", "tiny-single"], capsys)
    _add([folder, "--id", "tiny-folder"], capsys)
    images = []
    for model_id in ("tiny-single", "tiny-folder"):
        assert _generate(model_id, tmp_path / model_id) == 0
        images.append(np.asarray(Image.open(json.loads(capsys.readouterr().out)[0]["path"])).astype(int))
    assert images[0].shape == (SIZE, SIZE, 3) and images[0].std() > 1
    assert np.abs(images[0] - images[1]).max() <= 1


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
    from designerbox.pipelines.text_to_image import initial_noise
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
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe([PROMPT] * len(SEEDS), negative_prompt=[NEGATIVE] * len(SEEDS), height=SIZE, width=SIZE,
                  num_inference_steps=2, guidance_scale=CFG, latents=initial_noise(SEEDS, (4, SIZE // 2, SIZE // 2)),
                  output_type="pt").images
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


# --- LoRA (pipelines/lora.py): <lora:NAME:STRENGTH> in the prompt -------------------------------------

LORA_LAYERS = {  # kohya/A1111 key prefixes of the tiny model's layers: attention, 1x1 conv, 3x3 conv, text encoder
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q": ((32, 32), None),
    "lora_unet_down_blocks_0_attentions_0_proj_in": ((32, 32, 1, 1), None),
    "lora_unet_up_blocks_0_resnets_0_conv1": ((64, 128, 3, 3), None),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj": ((32, 32), None),
}


def _write_lora(path, rank=4, alpha=2.0, layers=LORA_LAYERS, seed=0):
    """A LoRA file in kohya's format for the tiny SD model: per layer lora_down, lora_up, alpha."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    state = {}
    for prefix, (shape, _) in layers.items():
        out_ch, in_ch, *k = shape
        state[f"{prefix}.lora_down.weight"] = torch.randn(rank, in_ch, *k, generator=g) * 0.3
        state[f"{prefix}.lora_up.weight"] = torch.randn(out_ch, rank, *([1, 1] if k else []), generator=g) * 0.3
        state[f"{prefix}.alpha"] = torch.tensor(alpha)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return state


def test_lora_merges_exactly_and_comes_out_again(tiny_sd, sd_home, capsys):
    from designerbox.pipelines.lora import set_loras
    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    folder, single, config = tiny_sd
    _add([folder, "--id", "tiny-folder"], capsys)
    model = load_stable_diffusion(Registry(sd_home).get("tiny-folder"), "cpu")
    state = _write_lora(sd_home / "loras" / "style.safetensors")
    q = model.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q
    conv = model.unet.up_blocks[0].resnets[0].conv1
    before_q, before_conv = q.weight.clone(), conv.weight.clone()
    summary = set_loras(model, [(sd_home / "loras" / "style.safetensors", 0.7)])
    assert summary == [{"name": "style", "strength": 0.7, "layers": 4}]
    p = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    expected = before_q + 0.7 * (2.0 / 4) * state[f"{p}.lora_up.weight"] @ state[f"{p}.lora_down.weight"]
    assert torch.allclose(q.weight, expected, atol=1e-6)
    p = "lora_unet_up_blocks_0_resnets_0_conv1"  # a 3x3 convolution (LoCon)
    delta = (state[f"{p}.lora_up.weight"].flatten(1) @ state[f"{p}.lora_down.weight"].flatten(1)).reshape(conv.weight.shape)
    assert torch.allclose(conv.weight, before_conv + 0.7 * 0.5 * delta, atol=1e-6)
    set_loras(model, [])
    assert torch.equal(q.weight, before_q) and torch.equal(conv.weight, before_conv)


def test_lora_tag_in_the_prompt_through_the_cli(tiny_sd, sd_home, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from designerbox.cli import main

    folder, single, config = tiny_sd
    _add([folder, "--id", "tiny-folder"], capsys)
    _write_lora(sd_home / "loras" / "style.safetensors")

    def draw(prompt, name):
        code = main(["generate", prompt, "--model", "tiny-folder", "--steps", "2", "--sampler", "euler",
                     "--size", f"{SIZE}x{SIZE}", "--seed", "3", "-o", str(tmp_path / name), "--json", "--no-gallery"])
        assert code == 0
        out = json.loads(capsys.readouterr().out)[0]
        return np.asarray(Image.open(out["path"])).astype(int), out["record"]

    plain, rec_plain = draw(PROMPT, "a")
    styled, rec = draw(f"{PROMPT} <lora:style:0.8>", "b")
    zero, _ = draw(f"{PROMPT} <lora:style:0>", "c")
    again, _ = draw(PROMPT, "d")  # the LoRA is taken out for the next request
    assert np.abs(styled - plain).max() > 0
    assert np.array_equal(zero, plain) and np.array_equal(again, plain)
    assert rec["conditioning"]["prompt"] == PROMPT and rec["request"]["prompt"].endswith("<lora:style:0.8>")
    assert rec["loras"][0]["name"] == "style" and rec["loras"][0]["strength"] == 0.8
    assert len(rec["loras"][0]["sha256"]) == 64 and rec_plain["loras"] == []


def test_lora_errors_name_the_problem(tiny_sd, sd_home, tmp_path, capsys):
    from designerbox.cli import main

    folder, single, config = tiny_sd
    _add([folder, "--id", "tiny-folder"], capsys)
    _write_lora(sd_home / "loras" / "style.safetensors")
    _write_lora(sd_home / "loras" / "other-family.safetensors",
                layers={"lora_unet_input_blocks_4_1_proj_in": ((32, 32, 1, 1), None)})
    args = ["--model", "tiny-folder", "--steps", "1", "--size", f"{SIZE}x{SIZE}", "-o", str(tmp_path), "--no-gallery"]
    assert main(["generate", "a cat <lora:nope>", *args]) != 0
    err = capsys.readouterr().err
    assert "no LoRA named 'nope'" in err and "other-family, style" in err
    assert main(["generate", "a cat <lora:other-family:1>", *args]) != 0
    assert "does not fit this model" in capsys.readouterr().err
    assert main(["generate", "a cat <lora:../../models/tiny-folder/unet/diffusion_pytorch_model>", *args]) != 0
    assert "is not a LoRA name" in capsys.readouterr().err  # no way out of the loras folder
    assert main(["generate", "a cat <lora:style:strong>", *args]) != 0
    assert "strength must be a number" in capsys.readouterr().err
    assert main(["generate", "a cat <lora:style>", "--steps", "1", "-o", str(tmp_path), "--no-gallery"]) != 0
    assert "work with Stable Diffusion models" in capsys.readouterr().err  # the default model is a pixel model


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


# --- bad files ----------------------------------------------------------------------------------------

def test_a_pickle_checkpoint_is_refused_unopened(sd_home, tmp_path):
    from designerbox.cli import main

    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04 would run code if unpickled")
    assert main(["models", "add", str(ckpt)]) != 0
    from designerbox.registry.user_checkpoints import add_checkpoint

    with pytest.raises(ModelFileError, match="never unpickles"):
        add_checkpoint(ckpt, sd_home, sd_home / "cache")
    disguised = tmp_path / "model.safetensors"
    disguised.write_bytes(b"\x80\x04 a pickle with another name")
    with pytest.raises(ModelFileError, match="never unpickles"):
        add_checkpoint(disguised, sd_home, sd_home / "cache")


def test_a_truncated_file_is_refused(tiny_sd, sd_home, tmp_path):
    from designerbox.registry.user_checkpoints import add_checkpoint

    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(tiny_sd[1].read_bytes()[:100_000])
    with pytest.raises(ModelFileError, match="truncated"):
        add_checkpoint(cut, sd_home, sd_home / "cache")


def test_wrong_keys_are_named(tiny_sd, sd_home, tmp_path):
    from safetensors.torch import load_file, save_file

    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import add_checkpoint, load_stable_diffusion

    state = load_file(str(tiny_sd[1]))
    dropped = "model.diffusion_model.out.2.weight"
    del state[dropped]
    broken = tmp_path / "broken.safetensors"
    save_file(state, str(broken))
    add_checkpoint(broken, sd_home, sd_home / "cache", config=tiny_sd[2])
    with pytest.raises(ModelFileError, match=r"\(unet\).*1 missing.*conv_out\.weight"):
        load_stable_diffusion(Registry(sd_home).get("broken"), "cpu")
    # the full SD 1.5 architecture is not what this tiny file holds: shapes are named
    add_checkpoint(tiny_sd[1], sd_home, sd_home / "cache", model_id="tiny-as-sd15")
    with pytest.raises(ModelFileError, match="other shapes"):
        load_stable_diffusion(Registry(sd_home).get("tiny-as-sd15"), "cpu")


def test_an_sdxl_file_claimed_as_sd15_is_refused(sd_home, tmp_path):
    from designerbox.registry.user_checkpoints import add_checkpoint

    xl = _header_only(tmp_path / "xl.safetensors", [
        "model.diffusion_model.input_blocks.0.0.weight", "conditioner.embedders.0.transformer.text_model.x",
        "conditioner.embedders.1.model.ln_final.weight"])
    with pytest.raises(ModelFileError, match=r"given as Stable Diffusion 1\.x \(sd15\).*Stable Diffusion XL base"):
        add_checkpoint(xl, sd_home, sd_home / "cache", family="sd15")
    refiner = _header_only(tmp_path / "refiner.safetensors", [
        "model.diffusion_model.input_blocks.0.0.weight", "conditioner.embedders.0.model.ln_final.weight"])
    with pytest.raises(ModelFileError, match=r"given as Stable Diffusion XL base \(sdxl\).*Stable Diffusion XL refiner"):
        add_checkpoint(refiner, sd_home, sd_home / "cache", family="sdxl")


def test_the_packaged_sd15_config_is_the_published_architecture():
    """Built on the meta device (no memory): the parameter counts of SD 1.5's UNet, VAE and CLIP
    ViT-L/14 text encoder, and diffusers' converter maps the full-size LDM key layout onto them."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    from designerbox.registry.families import family_from_keys
    from designerbox.registry.user_checkpoints import packaged_config

    config = packaged_config("sd15")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(config / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(config / "vae")))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_json_file(str(config / "text_encoder" / "config.json")))
    counts = [sum(p.numel() for p in n.parameters()) for n in (unet, vae, text_encoder)]
    assert counts == [859_520_964, 83_653_863, 123_060_480]
    ldm = to_ldm(unet, vae, text_encoder)
    assert family_from_keys(list(ldm)).id == "sd15"
    assert set(convert_ldm_unet_checkpoint(ldm, unet.config)) == set(unet.state_dict())
    assert set(convert_ldm_vae_checkpoint(ldm, vae.config)) == set(vae.state_dict())
