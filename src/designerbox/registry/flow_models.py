"""A user's SD3 and FLUX models (the rectified-flow families): what registering checks, and loading.

Diffusers-format folders, as published (model_index.json; transformer/, vae/, text encoders,
tokenizers, scheduler/), each network read from its safetensors files (sharded ones too): the
transformer and VAE built on the meta device from config.json and given the tensors (every one
checked), the text encoders by transformers' from_pretrained with use_safetensors=True and
local_files_only=True. Never a pickle, never the network. Every file is hash-checked first
(registry.files.verify_files).

    family        networks                                                   T5 tokenizer
    sd3           transformer, vae, text_encoder, text_encoder_2 (CLIP-L/G  tokenizer_3/
                  with projection), text_encoder_3 (T5-XXL, optional)
    flux-dev      transformer (guidance_embeds), vae, text_encoder (CLIP-L),  tokenizer_2/
    flux-schnell  text_encoder_2 (T5-XXL)

The CLIP tokenizers come from the folder, else are built offline (registry.clip_tokenizer) at
registration. The T5 tokenizer (sentencepiece) ships with no installed package, so it must come with
the user's files: a tokenizer folder holding tokenizer.json (the published folders have it beside
spiece.model; reading spiece.model alone would need the sentencepiece package, not installed).

Single .safetensors files of these families (BFL's flux1-dev.safetensors holds the transformer only;
sd3_medium_incl_clips*.safetensors all networks in the SD3 layout) are registered and converted by
registry/flow_single_file.py, what they lack taken from a diffusers folder given with --config.

dtype: bfloat16 on a GPU (FLUX and T5 overflow in float16), float32 on the CPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from designerbox.registry.files import ModelFileError, verify_files
from designerbox.registry.manifest import ModelManifest

FLOW_FAMILIES = ("sd3", "flux-dev", "flux-schnell")
NETS = {"sd3": ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"),
        "flux-dev": ("transformer", "vae", "text_encoder", "text_encoder_2"),
        "flux-schnell": ("transformer", "vae", "text_encoder", "text_encoder_2")}
CLIP_TOKENIZERS = {"sd3": {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"},
                   "flux-dev": {"tokenizer": "<|endoftext|>"}, "flux-schnell": {"tokenizer": "<|endoftext|>"}}
T5 = {"sd3": ("text_encoder_3", "tokenizer_3"), "flux-dev": ("text_encoder_2", "tokenizer_2"),
      "flux-schnell": ("text_encoder_2", "tokenizer_2")}
OPTIONAL = {("sd3", "text_encoder_3")}  # SD3 runs without T5 (zeros in its place), as diffusers allows
TEXT_ENCODERS = {"sd3": "clip-vit-l-14+openclip-vit-bigg-14+t5-xxl", "flux-dev": "clip-vit-l-14+t5-xxl",
                 "flux-schnell": "clip-vit-l-14+t5-xxl"}
DEFAULTS = {"sd3": {"sampler": "euler", "schedule": "simple", "steps": 28, "cfg_scale": 7.0},
            "flux-dev": {"sampler": "euler", "schedule": "simple", "steps": 28, "cfg_scale": 3.5},
            "flux-schnell": {"sampler": "euler", "schedule": "simple", "steps": 4, "cfg_scale": 1.0}}


def _listed(folder: Path) -> dict:
    index = folder / "model_index.json"
    return json.loads(index.read_text()) if index.is_file() else {}


def check_folder(folder: Path, family: str) -> int:
    """Check a diffusers folder of a flow family before registering it; returns the size multiple of
    its images (the VAE's downsampling times the transformer's patch: 16 for SD3 and FLUX)."""
    listed = _listed(folder)
    missing = [n for n in NETS[family] if not (folder / n).is_dir() and (family, n) not in OPTIONAL
               and not (n in listed and listed[n][0] is None)]
    if missing:
        raise ModelFileError(f"{folder.name} is a {family} diffusers folder without {', '.join(missing)}/; "
                             f"it needs {', '.join(NETS[family])}/ (the published folder holds them all)")
    encoder, tok = T5[family]
    if (folder / encoder).is_dir() and not (folder / tok / "tokenizer.json").is_file():
        raise ModelFileError(
            f"{folder.name}: the T5 text encoder ({encoder}/) needs its tokenizer, {tok}/tokenizer.json (with "
            f"tokenizer_config.json), which is not there. DesignerBox has no offline copy of T5's sentencepiece "
            f"vocabulary: copy the {tok}/ folder of the published model (it holds spiece.model and tokenizer.json) "
            f"into {folder}")
    for n in NETS[family]:
        if (folder / n).is_dir() and not list((folder / n).glob("*.safetensors")):
            raise ModelFileError(f"{folder / n} holds no .safetensors weights (DesignerBox never loads pickles: "
                                 "convert .bin files to safetensors)")
    return config_multiple(folder, family)


def config_multiple(folder: Path, family: str) -> int:
    """The size multiple of a model's images from its vae/ and transformer/ configs: the VAE's
    downsampling times the transformer's patch (FLUX packs 2x2 latents into a token)."""
    vae = json.loads((folder / "vae" / "config.json").read_text())
    tr = json.loads((folder / "transformer" / "config.json").read_text())
    patch = tr.get("patch_size", 1) if family == "sd3" else 2
    return 2 ** (len(vae["block_out_channels"]) - 1) * patch


def _t5_tokenizer(folder: Path):
    from transformers import T5TokenizerFast

    if not (folder / "tokenizer.json").is_file():
        raise ModelFileError(f"{folder} has no tokenizer.json (the T5 tokenizer); copy the published model's "
                             f"{folder.name}/ folder (spiece.model, tokenizer.json, tokenizer_config.json) there")
    return T5TokenizerFast.from_pretrained(str(folder), local_files_only=True)


def _diffusers_network(cls, folder: Path, dtype: torch.dtype) -> torch.nn.Module:
    """A diffusers network built on the meta device from its config.json and given its tensors from the
    safetensors files (sharded: those of the *.safetensors.index.json), cast to dtype: one copy of the
    weights in memory, never a random float32 one (12B parameters of FLUX would be 48 GB)."""
    from safetensors.torch import load_file

    from designerbox.registry.loading import check_state_dict
    from designerbox.registry.user_checkpoints import _component_file

    index = sorted(folder.glob("*.safetensors.index.json"))
    if index:
        files = sorted({folder / f for f in json.loads(index[0].read_text())["weight_map"].values()})
    else:
        files = [_component_file(folder)]
    with torch.device("meta"):
        net = cls.from_config(cls.load_config(str(folder)))
    state = {}
    for f in files:
        state.update({k: v.to(dtype) for k, v in load_file(str(f)).items()})
    check_state_dict(str(folder), net.state_dict(), state)
    net.load_state_dict(state, assign=True)
    left = [n for n, t in (*net.named_parameters(), *net.named_buffers()) if t.is_meta]
    if left:
        raise ModelFileError(f"{folder}: {len(left)} tensors were not in its files (e.g. {left[:3]})")
    return net


def _network(folder: Path, name: str, family: str, dtype: torch.dtype):
    """One network of a diffusers folder, from its config and safetensors (sharded or not)."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel, SD3Transformer2DModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, T5EncoderModel

    if name == "transformer":
        cls = SD3Transformer2DModel if family == "sd3" else FluxTransformer2DModel
    elif name == "vae":
        cls = AutoencoderKL
    elif name == T5[family][0]:
        cls = T5EncoderModel
    else:
        cls = CLIPTextModelWithProjection if family == "sd3" else CLIPTextModel
    if name in ("transformer", "vae"):
        return _diffusers_network(cls, folder / name, dtype)
    net, info = cls.from_pretrained(str(folder / name), dtype=dtype, local_files_only=True, use_safetensors=True,
                                    output_loading_info=True)  # transformers builds on the meta device itself
    missing = [k for k in info.get("missing_keys", []) if not k.endswith("position_ids")]
    wrong = [str(k) for k in info.get("mismatched_keys", [])] + list(info.get("error_msgs", []))
    if missing or wrong:  # from_pretrained would leave these random: refuse instead
        raise ModelFileError(f"{folder / name}: its weights do not match its config.json: {len(missing)} missing "
                             f"(e.g. {sorted(missing)[:3]}), {len(wrong)} mis-shaped (e.g. {wrong[:2]})")
    return net


def load_flow_model(manifest: ModelManifest, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                    vae_tiling: str | None = None, offload: str | None = None):
    """A StableDiffusion3 or Flux from a registered diffusers folder, hash-checked first, offline.

    dtype: default bfloat16 on a GPU, float32 on the CPU. offload and vae_tiling as load_stable_diffusion."""
    from designerbox.pipelines.offload import offload_mode
    from designerbox.pipelines.stable_diffusion import vae_tiling_mode
    from designerbox.registry.families import detect
    from designerbox.registry.flow_single_file import COMPONENTS_FILE
    from designerbox.registry.user_checkpoints import CONFIG_DIR, _source

    family = manifest.family
    vae_tiling = vae_tiling_mode(vae_tiling or os.environ.get("DESIGNERBOX_VAE_TILING"))
    offload = offload_mode(offload or os.environ.get("DESIGNERBOX_OFFLOAD") or manifest.offload)
    verify_files(manifest.folder, manifest.files)
    config = manifest.folder / CONFIG_DIR
    if (config / COMPONENTS_FILE).is_file():  # a single file (registry/flow_single_file.py)
        return _assemble(manifest, family, config, config, device, dtype, vae_tiling, offload, single=True)
    source, _ = _source(manifest)
    found = detect(source)
    if found.id != family:
        raise ModelFileError(f"model {manifest.id}: its manifest says {family}, its files {found.id}")
    return _assemble(manifest, family, source, config, device, dtype, vae_tiling, offload, single=False)


def _assemble(manifest: ModelManifest, family: str, source: Path, config: Path, device, dtype, vae_tiling: str,
              offload: str, single: bool):
    """The model from its networks (a diffusers folder `source`, or a single file registered in `config`),
    tokenizers and scheduler config."""
    from transformers import CLIPTokenizer

    from designerbox.pipelines.flux import Flux
    from designerbox.pipelines.offload import enable_model_offload
    from designerbox.pipelines.stable_diffusion_3 import StableDiffusion3
    from designerbox.registry.flow_single_file import load_networks
    from designerbox.registry.user_checkpoints import CONFIG_DIR

    on_gpu = torch.device(device).type == "cuda"
    dtype = dtype or (torch.bfloat16 if on_gpu else torch.float32)
    where = "cpu" if offload == "model" else device
    # 1. the networks, each from its own folder or converted from the single file (absent optional T5: None)
    if single:
        nets = load_networks(config, family, dtype, where)
    else:
        nets = {}
        for name in NETS[family]:
            if not (source / name).is_dir():
                nets[name] = None
                continue
            try:
                nets[name] = _network(source, name, family, dtype).to(where)
            except (OSError, ValueError) as err:  # missing or mis-shaped tensors, an unreadable file
                raise ModelFileError(f"model {manifest.id} ({name}): {err}") from None
    nets = {n: net.eval().requires_grad_(False) if net is not None else None for n, net in nets.items()}
    # 2. the tokenizers: CLIP's from the folder or built at registration, T5's from the folder
    toks = {}
    for name in CLIP_TOKENIZERS[family]:
        folder = source / name if (source / name).is_dir() else manifest.folder / CONFIG_DIR / name
        toks[name] = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    t5_encoder, t5_tok = T5[family]
    toks[t5_tok] = _t5_tokenizer(source / t5_tok) if nets[t5_encoder] is not None else None
    # 3. the flow schedule
    sched = json.loads((source / "scheduler" / "scheduler_config.json").read_text())
    common = dict(device=torch.device(device), dtype=dtype, vae_tiling=vae_tiling,
                  num_train_timesteps=sched.get("num_train_timesteps", 1000))
    if family == "sd3":
        if sched.get("use_dynamic_shifting"):
            raise ModelFileError(f"model {manifest.id}: an SD3 scheduler with use_dynamic_shifting is not supported; "
                                 "set a fixed shift in scheduler/scheduler_config.json")
        model = StableDiffusion3(**nets, **toks, shift=float(sched.get("shift", 3.0)), **common)
    else:
        model = Flux(**nets, **toks, scheduler=sched, **common)
    if offload == "model":
        enable_model_offload(model, device)
    return model
