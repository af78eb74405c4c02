"""The set-up shared by the tests of SD3 and FLUX (dev, schnell) checkpoints (test_flow_models,
test_flow_single_file): the tiny models (a 2-layer MMDiT or FLUX transformer, a 16-channel VAE of 2 levels,
CLIP text encoders of 2 layers with the full CLIP vocabulary, a 2-layer T5 encoder) saved as diffusers
folders by diffusers' own pipelines, with a tiny T5 tokenizer built with the `tokenizers` library
(tokenizer.json, as the published tokenizer folders hold it); and single files of those folders in the
original layouts (the reference MMDiT, Black Forest Labs' FLUX, ComfyUI's text encoders), written with the
inverse of diffusers' converters.

The session fixtures tiny_sd3 and tiny_flux (conftest.py) build the folders with build_sd3 and build_flux.
"""

from __future__ import annotations

import shutil

import torch
from tiny_checkpoints import TINY_CLIP, vae_to_ldm

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


# --- the tiny diffusers folders ---------------------------------------------------------------------------------

def build_sd3(root, clip_cache):
    """root/tiny-sd3: a tiny random-weight SD3 saved by StableDiffusion3Pipeline."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from designerbox.registry.clip_tokenizer import clip_tokenizer

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


def build_flux(root, clip_cache, guidance: bool):
    """root/tiny-flux-dev (guidance embedded, shift by size) or root/tiny-flux-schnell, saved by FluxPipeline."""
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


def single_file(folder, kind: str, out, transformer_only: bool = False):
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


def configs_only(folder, out):
    """The folder's configs and tokenizers without weights or the transformer's config (read from the file)."""
    shutil.copytree(folder, out, ignore=shutil.ignore_patterns("*.safetensors", "transformer"))
    return out

