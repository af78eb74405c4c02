"""Single .safetensors files of SD3 and FLUX in their original layouts, and what they leave out.

What such files hold (keys as the reference code and ComfyUI save them):

    transformer  SD3: model.diffusion_model.{pos_embed, x_embedder, t_embedder, y_embedder,
                 context_embedder, joint_blocks.N.{x_block, context_block}, final_layer}
                 FLUX (Black Forest Labs): {img_in, txt_in, time_in, vector_in, guidance_in (dev),
                 double_blocks.N, single_blocks.N, final_layer}, bare or under model.diffusion_model.
    vae          first_stage_model.* (or vae.*), the LDM autoencoder layout
    text         text_encoders.{clip_l, clip_g, t5xxl}.transformer.*: transformers' own names

BFL's flux1-dev.safetensors and most fine-tunes hold the transformer alone; SD3's
sd3_medium_incl_clips_t5xxlfp8 holds everything. Components the file lacks come from a diffusers
folder given at registration (`designerbox models add FILE --config FOLDER`, e.g. the published
FLUX.1-dev folder: its vae/, text encoders, tokenizers and scheduler, its transformer ignored). The
T5 tokenizer always comes from such a folder (tokenizer_3/ for SD3, tokenizer_2/ for FLUX, with
tokenizer.json): no installed package ships T5's vocabulary.

Architectures: the transformer's config is read from the file's tensor shapes (layers, widths,
SD3's patch and position table, FLUX's head width from its q-norm scale; SD3 heads are 64 wide as
in every released SD3), unless the folder has transformer/config.json; the other networks' configs
come from the folder, else from designerbox/configs/<family>/ (the published SD3 medium and
FLUX.1 architectures). The SD3 transformer is converted by diffusers' own function; FLUX's
(diffusers' assumes the full 3072 width) by flux_transformer_from_bfl below, the same mapping for
any width. The files never get unpickled: safetensors only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from designerbox.registry.files import ModelFileError, read_safetensors_header

# where a single file keeps each network of a family: key prefix (None: the transformer's own keys)
PREFIXES = {
    "sd3": {"transformer": "model.diffusion_model.", "vae": ("first_stage_model.", "vae."),
            "text_encoder": "text_encoders.clip_l.transformer.", "text_encoder_2": "text_encoders.clip_g.transformer.",
            "text_encoder_3": "text_encoders.t5xxl.transformer."},
    "flux": {"transformer": None, "vae": ("first_stage_model.", "vae."),
             "text_encoder": "text_encoders.clip_l.transformer.", "text_encoder_2": "text_encoders.t5xxl.transformer."},
}
FLUX_TRANSFORMER = ("img_in.", "txt_in.", "time_in.", "vector_in.", "guidance_in.", "double_blocks.", "single_blocks.",
                    "final_layer.")
COMPONENTS_FILE = "components.json"


def _kind(family: str) -> str:
    return "sd3" if family == "sd3" else "flux"


def _is_flux_transformer(key: str) -> bool:
    return key.removeprefix("model.diffusion_model.").startswith(FLUX_TRANSFORMER)


def file_components(keys, family: str) -> list[str]:
    """The networks a single file holds tensors of."""
    found = []
    for name, prefix in PREFIXES[_kind(family)].items():
        if prefix is None:
            hit = any(_is_flux_transformer(k) for k in keys)
        else:
            prefixes = prefix if isinstance(prefix, tuple) else (prefix,)
            hit = any(k.startswith(prefixes) for k in keys)
        if hit:
            found.append(name)
    return found


def transformer_config(family: str, shapes: dict[str, list[int]]) -> dict:
    """The transformer's constructor arguments, from the tensor shapes of a single file's header."""
    if family == "sd3":
        s = {k.removeprefix("model.diffusion_model."): v for k, v in shapes.items()}
        hidden, channels, patch, _ = s["x_embedder.proj.weight"]
        layers = 1 + max(int(k.split(".")[1]) for k in s if k.startswith("joint_blocks."))
        dual = sorted({int(k.split(".")[1]) for k in s if ".x_block.attn2." in k})
        return {"_class_name": "SD3Transformer2DModel", "sample_size": 128, "patch_size": patch,
                "in_channels": channels, "out_channels": s["final_layer.linear.weight"][0] // (patch * patch),
                "num_layers": layers, "attention_head_dim": 64, "num_attention_heads": hidden // 64,
                "joint_attention_dim": s["context_embedder.weight"][1],
                "caption_projection_dim": s["context_embedder.weight"][0],
                "pooled_projection_dim": s["y_embedder.mlp.0.weight"][1],
                "pos_embed_max_size": round(s["pos_embed"][1] ** 0.5),
                "qk_norm": "rms_norm" if any(".attn.ln_q." in k for k in s) else None,
                "dual_attention_layers": dual}
    s = {k.removeprefix("model.diffusion_model."): v for k, v in shapes.items()}
    hidden, channels = s["img_in.weight"]
    head = s["double_blocks.0.img_attn.norm.query_norm.scale"][0]
    rope = [head // 8, head * 7 // 16, head * 7 // 16]  # (16, 56, 56) for FLUX.1's 128-wide heads
    return {"_class_name": "FluxTransformer2DModel", "patch_size": 1, "in_channels": channels,
            "num_layers": 1 + max(int(k.split(".")[1]) for k in s if k.startswith("double_blocks.")),
            "num_single_layers": 1 + max(int(k.split(".")[1]) for k in s if k.startswith("single_blocks.")),
            "attention_head_dim": head, "num_attention_heads": hidden // head,
            "joint_attention_dim": s["txt_in.weight"][1], "pooled_projection_dim": s["vector_in.in_layer.weight"][1],
            "guidance_embeds": "guidance_in.in_layer.weight" in s, "axes_dims_rope": rope}


def swap_scale_shift(w: torch.Tensor) -> torch.Tensor:
    """The final AdaLN's (shift, scale) halves in the reference code are (scale, shift) in diffusers."""
    shift, scale = w.chunk(2, dim=0)
    return torch.cat([scale, shift], dim=0)


def flux_transformer_from_bfl(ckpt: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BFL's FLUX transformer tensors -> FluxTransformer2DModel's (diffusers' mapping, any width)."""
    sd = {k.removeprefix("model.diffusion_model."): v for k, v in ckpt.items() if _is_flux_transformer(k)}
    out = {}

    def move(src: str, dst: str) -> None:
        for suffix in (".weight", ".bias"):
            if src + suffix in sd:
                out[dst + suffix] = sd[src + suffix]

    for src, dst in (("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1"),
                     ("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2"),
                     ("vector_in.in_layer", "time_text_embed.text_embedder.linear_1"),
                     ("vector_in.out_layer", "time_text_embed.text_embedder.linear_2"),
                     ("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1"),
                     ("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2"),
                     ("txt_in", "context_embedder"), ("img_in", "x_embedder"), ("final_layer.linear", "proj_out")):
        move(src, dst)
    inner = sd["img_in.weight"].shape[0]
    doubles = {int(k.split(".")[1]) for k in sd if k.startswith("double_blocks.")}
    singles = {int(k.split(".")[1]) for k in sd if k.startswith("single_blocks.")}
    for i in sorted(doubles):
        p, q = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        for src, dst in (("img_mod.lin", "norm1.linear"), ("txt_mod.lin", "norm1_context.linear"),
                         ("img_attn.proj", "attn.to_out.0"), ("txt_attn.proj", "attn.to_add_out"),
                         ("img_mlp.0", "ff.net.0.proj"), ("img_mlp.2", "ff.net.2"),
                         ("txt_mlp.0", "ff_context.net.0.proj"), ("txt_mlp.2", "ff_context.net.2")):
            move(p + src, q + dst)
        for src, dst in (("img_attn.norm.query_norm", "attn.norm_q"), ("img_attn.norm.key_norm", "attn.norm_k"),
                         ("txt_attn.norm.query_norm", "attn.norm_added_q"),
                         ("txt_attn.norm.key_norm", "attn.norm_added_k")):
            out[f"{q}{dst}.weight"] = sd[f"{p}{src}.scale"]
        for src, names in (("img_attn.qkv", ("to_q", "to_k", "to_v")),
                           ("txt_attn.qkv", ("add_q_proj", "add_k_proj", "add_v_proj"))):
            for suffix in (".weight", ".bias"):
                for name, part in zip(names, sd[p + src + suffix].chunk(3, dim=0)):  # fused q, k, v
                    out[f"{q}attn.{name}{suffix}"] = part
    for i in sorted(singles):
        p, q = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        move(p + "modulation.lin", q + "norm.linear")
        move(p + "linear2", q + "proj_out")
        out[q + "attn.norm_q.weight"] = sd[p + "norm.query_norm.scale"]
        out[q + "attn.norm_k.weight"] = sd[p + "norm.key_norm.scale"]
        for suffix in (".weight", ".bias"):
            w = sd[p + "linear1" + suffix]  # q, k, v and the MLP's input side by side
            parts = w.split([inner, inner, inner, w.shape[0] - 3 * inner], dim=0)
            for name, part in zip(("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), parts):
                out[q + name + suffix] = part
    for suffix in (".weight", ".bias"):
        out["norm_out.linear" + suffix] = swap_scale_shift(sd["final_layer.adaLN_modulation.1" + suffix])
    return out


def component_state(ckpt: dict[str, torch.Tensor], family: str, name: str, config: dict) -> dict[str, torch.Tensor]:
    """One network's tensors out of a single file, in diffusers' / transformers' names."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_vae_checkpoint,
        convert_sd3_transformer_checkpoint_to_diffusers,
    )

    if name == "transformer":
        if family == "sd3":
            return convert_sd3_transformer_checkpoint_to_diffusers(
                {k: v for k, v in ckpt.items() if k.startswith("model.diffusion_model.")})
        return flux_transformer_from_bfl(ckpt)
    if name == "vae":
        return convert_ldm_vae_checkpoint({k: v for k, v in ckpt.items() if k.startswith(("first_stage_model.",
                                                                                         "vae."))}, config)
    prefix = PREFIXES[_kind(family)][name]
    state = {k[len(prefix):]: v for k, v in ckpt.items() if k.startswith(prefix)}
    if "shared.weight" in state:  # T5: the token table is shared with the encoder's embedding
        state.setdefault("encoder.embed_tokens.weight", state["shared.weight"])
    return state


def prepare(path: Path, family: str, config_dir: Path, folder: Path | None) -> dict:
    """At registration: which networks come from the file and which from `folder`, their configs
    written into config_dir; returns what components.json records. Raises ModelFileError naming
    what is missing and how to add it."""
    from designerbox.registry.flow_models import NETS, OPTIONAL, T5
    from designerbox.registry.user_checkpoints import packaged_config

    header = read_safetensors_header(path)
    shapes = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
    in_file = file_components(shapes, family)
    from_folder, missing = [], []
    for name in NETS[family]:
        if name in in_file:
            continue
        if folder is not None and list((folder / name).glob("*.safetensors")):
            from_folder.append(name)
        elif (family, name) not in OPTIONAL:
            missing.append(name)
    if missing:
        raise ModelFileError(
            f"{path.name} holds {', '.join(in_file)} of {family} but not {', '.join(missing)}: add it with --config "
            f"FOLDER, a {family} diffusers folder holding {', '.join(f'{m}/' for m in missing)} (e.g. the published "
            f"model's folder; its transformer is not used)" + (f"; {folder} has none of them" if folder else ""))
    t5_encoder, t5_tok = T5[family]
    if t5_encoder in in_file + from_folder:
        tok = folder / t5_tok if folder is not None else None
        if tok is None or not (tok / "tokenizer.json").is_file():
            raise ModelFileError(
                f"{path.name}: its T5 text encoder needs T5's tokenizer, which no installed package ships: add "
                f"the file with --config FOLDER, a {family} diffusers folder holding {t5_tok}/tokenizer.json (the "
                "published folders have it beside spiece.model)")
        shutil.copytree(tok, config_dir / t5_tok, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    # configs: the folder's own where it has them, else the packaged ones; the transformer's from the file
    packaged = packaged_config(family)
    for name in ("vae", "scheduler", *[n for n in NETS[family] if n.startswith("text_encoder")]):
        src = folder / name if folder is not None and (folder / name).is_dir() else packaged / name
        if src.is_dir():
            shutil.copytree(src, config_dir / name, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.pt"))
    for name in ("tokenizer", "tokenizer_2"):  # the folder's CLIP tokenizers, if it has them
        if folder is not None and (folder / name).is_dir() and name != t5_tok:
            shutil.copytree(folder / name, config_dir / name)
    ours = folder / "transformer" / "config.json" if folder is not None else None
    (config_dir / "transformer").mkdir(parents=True, exist_ok=True)
    config = json.loads(ours.read_text()) if ours is not None and ours.is_file() else transformer_config(family, shapes)
    (config_dir / "transformer" / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.copy(packaged / "model_index.json", config_dir / "model_index.json")
    record = {"file": str(path), "folder": str(folder) if folder else None, "from_file": in_file,
              "from_folder": from_folder}
    (config_dir / COMPONENTS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def load_networks(config_dir: Path, family: str, dtype: torch.dtype, where) -> dict:
    """The networks of a registered single file: converted from the file, or read from the folder."""
    from safetensors.torch import load_file

    from designerbox.registry.flow_models import NETS, T5, _network
    from designerbox.registry.loading import check_state_dict
    from designerbox.registry.user_checkpoints import _match_text_model_prefix

    record = json.loads((config_dir / COMPONENTS_FILE).read_text())
    ckpt = load_file(record["file"])
    nets = {}
    for name in NETS[family]:
        if name in record["from_folder"]:
            nets[name] = _network(Path(record["folder"]), name, family, dtype).to(where)
            continue
        if name not in record["from_file"]:
            nets[name] = None
            continue
        net = _build(config_dir / name, name, family)
        try:
            state = component_state(ckpt, family, name, net.config if name == "vae" else None)
        except KeyError as err:  # a converter indexes a tensor the layout must have
            raise ModelFileError(f"{record['file']} ({name}): the file lacks tensor {err} of the {family} "
                                 "layout") from None
        expected = net.state_dict()
        if name == T5[family][0]:  # tied copies of T5's token table that a T5EncoderModel may not list
            state = {k: v for k, v in state.items() if k in expected or not k.endswith("embed_tokens.weight")}
        elif name.startswith("text_encoder"):
            state = _match_text_model_prefix(state, expected)
        state = {k: v.to(dtype) for k, v in state.items() if k in expected or not k.endswith("position_ids")}
        try:
            check_state_dict(f"{Path(record['file']).name} ({name})", expected, state)
        except ModelFileError as err:
            raise ModelFileError(f"{err} (a file of another architecture needs its config: `designerbox models add "
                                 "FILE --config FOLDER --force` with a diffusers folder of it)") from None
        meta = next(net.parameters()).is_meta
        net.load_state_dict(state, assign=meta)
        left = [n for n, t in (*net.named_parameters(), *net.named_buffers()) if t.is_meta]
        if left:
            raise ModelFileError(f"{record['file']} ({name}): {len(left)} tensors were not in the file "
                                 f"(e.g. {left[:3]})")
        nets[name] = net.to(where, dtype)
    del ckpt
    return nets


def _build(folder: Path, name: str, family: str) -> torch.nn.Module:
    """One network from its config folder: the transformer, VAE and T5 on the meta device (no memory;
    the file's tensors are assigned), CLIP on the CPU (its position ids are a buffer no file holds)."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel, SD3Transformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    from designerbox.registry.flow_models import T5

    if name.startswith("text_encoder") and name != T5[family][0]:
        cls = CLIPTextModelWithProjection if family == "sd3" else CLIPTextModel
        return cls(CLIPTextConfig.from_json_file(str(folder / "config.json")))
    with torch.device("meta"):
        if name == T5[family][0]:
            return T5EncoderModel(T5Config.from_json_file(str(folder / "config.json")))
        cls = AutoencoderKL if name == "vae" else SD3Transformer2DModel if family == "sd3" else FluxTransformer2DModel
        return cls.from_config(cls.load_config(str(folder)))
