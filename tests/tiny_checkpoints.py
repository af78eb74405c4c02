"""The set-up shared by the tests of user Stable Diffusion checkpoints (SD 1.x, SD 2.x, SDXL and its refiner):
the tiny configs of each family, the inverse of diffusers' single-file conversion (diffusers names -> the
original LDM/SGM key names that A1111 and ComfyUI users keep), the packaged scheduler of a family, one
pipeline saved the two ways users keep checkpoints (a diffusers folder, and one .safetensors file under
the original key names with a config folder beside it), `models add`, `generate` and loading.

The session fixtures built from these (tiny_sd, tiny_sd2, tiny_sdxl) are in conftest.py; SD3 and FLUX have
theirs in tiny_flow_checkpoints.py. Imported as `from tiny_checkpoints import ...` (pytest puts tests/
on sys.path, as for server_util).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

PROMPT, NEGATIVE = "a photo of a cat", "blurry"
SEEDS = [3, 4]
SIZE = 32          # pixels; latents are 16x16 (the tiny VAE has one downsampling)
CFG = 5.0

# --- the tiny configs: UNet 32-64 channels, a 2-level VAE, 2-layer text encoders with the full 49,408-token vocabulary

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

# SD 2.x: linear projections and per-level head counts (as SD 2.x's [5, 10, 20, 20]), an OpenCLIP-like encoder
TINY_SD2_UNET = dict(TINY_UNET, attention_head_dim=(2, 4), use_linear_projection=True, upcast_attention=True)
TINY_OPEN_CLIP = dict(TINY_CLIP, hidden_act="gelu")   # OpenCLIP's activation (OpenAI's CLIP: quick_gelu)

# SDXL: 1 and 2 transformer layers, the text_time size conditioning, CLIP ViT-L-like + OpenCLIP bigG-like encoders
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


# --- diffusers -> original LDM keys (the layout of SD 1.x single files; the UNet and VAE of SD 2.x and SDXL) ------
# The mapping of diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py, generalised to any number
# of levels and layers.

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
    """An SD 1.x single file's state dict."""
    te = clip_to_ldm(text_encoder.state_dict(), "cond_stage_model.transformer.")
    return unet_to_ldm(unet.state_dict(), unet.config) | vae_to_ldm(vae.state_dict(), vae.config) | te


# --- the OpenCLIP text encoders (SD 2.x, SDXL's second, the refiner's) and SDXL's size embedding (SGM layout) ---

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
    """An SD 2.x single file's state dict (the text encoder under OpenCLIP's cond_stage_model.model.*)."""
    return (unet_to_ldm(unet.state_dict(), unet.config) | vae_to_ldm(vae.state_dict(), vae.config)
            | sd2_text_encoder_to_ldm(text_encoder))


def sdxl_unet_to_ldm(state: dict, config) -> dict:
    """The SD UNet mapping, plus the size/crop embedding: add_embedding.linear_{1,2} -> label_emb.0.{0,2}."""
    label = {"add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2."}
    out = unet_to_ldm({k: v for k, v in state.items() if not k.startswith("add_embedding.")}, config)
    for key, value in state.items():
        for hf, sd in label.items():
            if key.startswith(hf):
                out["model.diffusion_model." + sd + key[len(hf):]] = value
    return out


def to_sdxl_ldm(unet, vae, text_encoder, text_encoder_2) -> dict:
    """An SDXL base single file's state dict (conditioner.embedders.0 CLIP, .1 OpenCLIP)."""
    return (sdxl_unet_to_ldm(unet.state_dict(), unet.config) | vae_to_ldm(vae.state_dict(), vae.config)
            | clip_to_ldm(text_encoder.state_dict(), "conditioner.embedders.0.transformer.")
            | open_clip_to_ldm(text_encoder_2.state_dict()))


# --- building and saving ---------------------------------------------------------------------------------------

def tiny_models(seed: int, unet: dict, vae: dict, clip: dict | None = None, clip_2: dict | None = None):
    """(UNet, VAE, CLIP text encoder, text encoder with projection) with random weights drawn from seed, in
    that order; a text encoder whose config is None is None."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet, vae = UNet2DConditionModel(**unet), AutoencoderKL(**vae)
    text_encoder = CLIPTextModel(CLIPTextConfig(**clip)) if clip else None
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**clip_2)) if clip_2 else None
    return unet, vae, text_encoder, text_encoder_2


def packaged_scheduler(family: str):
    """The Euler scheduler of the family's packaged config (configs/<family>/scheduler)."""
    from diffusers import EulerDiscreteScheduler

    from designerbox.registry.user_checkpoints import packaged_config

    return EulerDiscreteScheduler.from_pretrained(str(packaged_config(family)), subfolder="scheduler")


def save_both(root: Path, name: str, pipe, ldm: dict) -> tuple[Path, Path, Path]:
    """(diffusers folder, single file, config folder): pipe saved as root/name, the ldm state dict as
    root/name.safetensors, and root/tiny-config, the architecture of the single file (the folder without
    weights or tokenizers)."""
    from safetensors.torch import save_file

    pipe.save_pretrained(root / name, safe_serialization=True)
    single = root / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in ldm.items()}, str(single))
    config = root / "tiny-config"
    shutil.copytree(root / name, config, ignore=shutil.ignore_patterns("*.safetensors", "tokenizer*"))
    return root / name, single, config


def packaged_networks(family: str) -> list:
    """The networks of the family's packaged config at full size on the meta device (no memory): UNet, VAE,
    then text_encoder (CLIPTextModel) and text_encoder_2 (with projection) where the config has them."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from designerbox.registry.user_checkpoints import packaged_config

    config = packaged_config(family)
    encoders = [(name, cls) for name, cls in (("text_encoder", CLIPTextModel),
                                              ("text_encoder_2", CLIPTextModelWithProjection))
                if (config / name).is_dir()]
    with torch.device("meta"):
        nets = [UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(config / "unet"))),
                AutoencoderKL.from_config(AutoencoderKL.load_config(str(config / "vae")))]
        nets += [cls(CLIPTextConfig.from_json_file(str(config / name / "config.json"))) for name, cls in encoders]
    return nets


def parameter_counts(*networks) -> list[int]:
    return [sum(p.numel() for p in n.parameters()) for n in networks]


# --- LoRA files (pipelines/lora.py) for the tiny SD 1.x model ----------------------------------------------------

LORA_LAYERS = {  # kohya/A1111 key prefixes of the tiny model's layers: attention, 1x1 conv, 3x3 conv, text encoder
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q": ((32, 32), None),
    "lora_unet_down_blocks_0_attentions_0_proj_in": ((32, 32, 1, 1), None),
    "lora_unet_up_blocks_0_resnets_0_conv1": ((64, 128, 3, 3), None),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj": ((32, 32), None),
}


def write_lora(path, rank=4, alpha=2.0, layers=LORA_LAYERS, seed=0):
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


# --- the user path: models add, generate, load, and diffusers' own pipeline --------------------------------------

def add_model(args, capsys) -> dict:
    """`designerbox models add ARGS --json`, which must succeed; its JSON report."""
    from designerbox.cli import main

    assert main(["models", "add", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def generate(model_id, out, sampler="euler", negative=NEGATIVE, extra=()) -> int:
    """`designerbox generate` of PROMPT (and negative, unless None) on the model: 2 Karras steps at CFG, SIZE
    pixels, seed 3, JSON out; its exit code."""
    from designerbox.cli import main

    args = ["generate", PROMPT, "--model", model_id, "--steps", "2", "--sampler", sampler, "--schedule", "karras",
            "--cfg", str(CFG), "--size", f"{SIZE}x{SIZE}", "--seed", "3", "-o", str(out), "--json", "--no-gallery"]
    return main(args + (["--negative", negative] if negative else []) + list(extra))


def load(model_id, home):
    """The added model, loaded on the CPU."""
    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    return load_stable_diffusion(Registry(home).get(model_id), "cpu")


def karras_euler(scheduler):
    """diffusers' EulerDiscreteScheduler as our euler + karras: Karras sigmas, linspace spacing."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config(scheduler.config, use_karras_sigmas=True, timestep_spacing="linspace")


def diffusers_images(pipe, negative=NEGATIVE) -> torch.Tensor:
    """What diffusers' text-to-image pipe draws for PROMPT (and negative, unless None) from our seeds' noise:
    SIZE pixels, 2 steps at CFG; (len(SEEDS), 3, SIZE, SIZE) in [0, 1]."""
    from designerbox.pipelines.text_to_image import initial_noise

    pipe.set_progress_bar_config(disable=True)
    return pipe([PROMPT] * len(SEEDS), negative_prompt=[negative] * len(SEEDS) if negative else None,
                height=SIZE, width=SIZE, num_inference_steps=2, guidance_scale=CFG,
                latents=initial_noise(SEEDS, (4, SIZE // 2, SIZE // 2)), output_type="pt").images
