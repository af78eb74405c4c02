"""A user's Stable Diffusion checkpoints: register them (`designerbox models add PATH`) and load them.

Registering writes a model folder under $DESIGNERBOX_HOME/models/<id>/ that points at the user's
file or folder where it lies (nothing is copied):

    manifest.json   family, kind diffusion, native size, licence "unknown (user-supplied)", every
                    file with its sha256 (the weights first: images record that hash, and its first
                    10 hex digits as A1111's AutoV2 short hash)
    config/         a single file's architecture (a diffusers-format config folder: model_index.json,
                    unet/, vae/, text_encoder/, scheduler/), copied from designerbox/configs/<family>/
                    or from the folder given with --config, plus tokenizer/ (registry.clip_tokenizer)

so that loading needs no network and no cache. A single file is converted from the original LDM key
layout with diffusers' own conversion functions (diffusers.loaders.single_file_utils) and loaded
into networks built from config/; a diffusers folder is loaded with from_pretrained(local_files_only,
safetensors only). Pickle checkpoints are refused before anything is read (registry.files).

Supported here: SD 1.x (family sd15). Other families are detected and named, then refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from importlib import resources
from pathlib import Path

import torch

from designerbox.registry.families import FAMILIES, detect
from designerbox.registry.files import ModelFileError, file_sha256, refuse_pickle, verify_files
from designerbox.registry.manifest import ModelManifest

LOADABLE = ("sd15",)
LICENCE = "unknown (user-supplied)"
CONFIG_DIR = "config"
CONFIG_FILES = ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
                "scheduler/scheduler_config.json")
DEFAULTS = {"sampler": "dpmpp_2m", "schedule": "karras", "steps": 25, "cfg_scale": 7.0}


def packaged_config(family: str) -> Path:
    return Path(str(resources.files("designerbox").joinpath("configs", family)))


def model_id_for(path: Path) -> str:
    """A manifest id from a file or folder name: lower case, [a-z0-9._-], at most 64 characters."""
    stem = path.name if path.is_dir() else path.stem
    slug = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")[:64]
    return slug if len(slug) >= 2 else f"model-{slug or 'x'}"


def add_checkpoint(path: Path, home: Path, cache: Path, model_id: str | None = None, family: str | None = None,
                   config: Path | None = None, force: bool = False) -> tuple[Path, dict]:
    """Register a .safetensors file or a diffusers folder as a user model; returns its folder and a report.

    family   what the user says it is: checked against what the tensors say
    config   a diffusers-format config folder for a single file of a non-standard architecture
    """
    from designerbox.registry.clip_tokenizer import tokenizer_folder

    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise ModelFileError(f"no such file or folder: {path}")
    if path.is_file():
        refuse_pickle(path)
        if path.suffix.lower() != ".safetensors":
            raise ModelFileError(f"{path.name}: only .safetensors files (or diffusers folders) can be added")
    found = detect(path)
    if family is not None and family != found.id:
        known = ", ".join(FAMILIES)
        if family not in FAMILIES:
            raise ModelFileError(f"unknown family {family!r}; known families: {known}")
        raise ModelFileError(f"{path.name} was given as {FAMILIES[family].name} ({family}), but its tensors are "
                             f"{found.name} ({found.id}); leave out --family to use what the file is")
    if found.id not in LOADABLE:
        raise ModelFileError(f"{path.name} is {found.name} ({found.id}); DesignerBox loads only "
                             f"{', '.join(LOADABLE)} checkpoints so far")
    model_id = model_id or model_id_for(path)
    dest = Path(home) / "models" / model_id
    if dest.exists() and not force:
        raise ModelFileError(f"a model with id {model_id!r} already exists ({dest}); choose another id or replace it")
    tmp = dest.with_name(f".add-{model_id}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        # 1. the files the model is made of, weights first, hashed
        if path.is_file():
            weights = [path]
            shutil.copytree(Path(config) if config else packaged_config(found.id), tmp / CONFIG_DIR,
                            ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.ckpt", "*.pt"))
        else:
            weights = sorted(path.glob("*/*.safetensors"), key=lambda p: (p.parent.name != "unet", str(p)))
            pickles = [p for p in path.glob("*/*") if p.suffix.lower() in (".bin", ".ckpt", ".pt", ".pth")]
            if not weights or any(not list(p.parent.glob("*.safetensors")) for p in pickles):
                raise ModelFileError(f"{path} holds pickle weights ({[p.name for p in pickles][:3]}) without "
                                     "safetensors beside them; DesignerBox loads only .safetensors")
            (tmp / CONFIG_DIR).mkdir()
        # 2. the tokenizer, when the config does not bring one
        if not (path / "tokenizer").is_dir() and not (tmp / CONFIG_DIR / "tokenizer").is_dir():
            shutil.copytree(tokenizer_folder(Path(cache)), tmp / CONFIG_DIR / "tokenizer")
        local = sorted(p.relative_to(tmp).as_posix() for p in (tmp / CONFIG_DIR).rglob("*") if p.is_file())
        theirs = [p for p in sorted(path.rglob("*.json")) if path.is_dir()]
        files = [{"path": str(p), "sha256": file_sha256(p), "bytes": p.stat().st_size} for p in weights + theirs]
        files += [{"path": n, "sha256": file_sha256(tmp / n), "bytes": (tmp / n).stat().st_size} for n in local]
        # 3. the manifest; sizes must divide into the VAE's and then the UNet's downsampling
        arch = tmp / CONFIG_DIR if path.is_file() else path
        vae_levels = len(json.loads((arch / "vae" / "config.json").read_text())["block_out_channels"])
        unet_levels = len(json.loads((arch / "unet" / "config.json").read_text())["block_out_channels"])
        multiple = 2 ** (vae_levels - 1) * 2 ** (unet_levels - 1)
        manifest = {
            "id": model_id, "name": path.name, "family": found.id, "kind": "diffusion", "licence": LICENCE,
            "description": f"{found.name}, user-supplied {'diffusers folder' if path.is_dir() else 'single file'} "
                           f"{path}" + (f"; {found.note}" if found.note else ""),
            "native_size": [found.native_size, found.native_size], "min_size": multiple, "max_size": 2048,
            "size_multiple": multiple, "prediction": found.prediction, "text_encoder": "clip-vit-l-14",
            "defaults": DEFAULTS, "files": files,
        }
        ModelManifest.model_validate(manifest)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    m = ModelManifest.read(dest)
    return dest, {"id": model_id, "folder": str(dest), "family": found.id, "source": str(path),
                  "sha256": m.weights_sha256, "hash": m.short_hash, "note": found.note or None}


# --- loading --------------------------------------------------------------------------------------

def _source(manifest: ModelManifest) -> tuple[Path, bool]:
    """(the user's file or folder, whether it is a single file)."""
    first = manifest.folder / manifest.files[0].path
    index = [manifest.folder / f.path for f in manifest.files if Path(f.path).name == "model_index.json"
             and Path(f.path).is_absolute()]
    return (index[0].parent, False) if index else (first, True)


def load_stable_diffusion(manifest: ModelManifest, device: str | torch.device = "cpu",
                          dtype: torch.dtype | None = None, compile: str | None = None):
    """A LatentDiffusion from a registered SD 1.x file or folder, hash-checked first, fully offline.

    dtype: default float16 on a GPU, float32 on the CPU. On a GPU the networks also get the speed-ups
    of pipelines.speed (channels-last, fused QKV; `compile`, default $DESIGNERBOX_COMPILE, e.g.
    "reduce-overhead": CUDA graphs, 3.6x faster per image on an H100, 44 s warm-up, 8 s from the cache)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from designerbox.pipelines.stable_diffusion import LatentDiffusion
    from designerbox.registry.loading import check_state_dict
    from designerbox.samplers.discrete import alphas_cumprod

    if manifest.family not in LOADABLE:
        raise ModelFileError(f"model {manifest.id}: family {manifest.family!r} cannot be loaded yet "
                             f"(loadable: {', '.join(LOADABLE)})")
    verify_files(manifest.folder, manifest.files)
    source, single = _source(manifest)
    config = manifest.folder / CONFIG_DIR if single else source
    found = detect(source)
    if found.id != manifest.family:
        raise ModelFileError(f"model {manifest.id}: its manifest says {manifest.family}, its tensors {found.id}")
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(config / "unet")))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(config / "vae")))
    text_encoder = CLIPTextModel(CLIPTextConfig.from_json_file(str(config / "text_encoder" / "config.json")))
    if single:
        from diffusers.loaders.single_file_utils import (
            convert_ldm_clip_checkpoint,
            convert_ldm_unet_checkpoint,
            convert_ldm_vae_checkpoint,
        )
        from safetensors.torch import load_file

        ckpt = load_file(str(source))
        parts = {"unet": (unet, convert_ldm_unet_checkpoint(ckpt, unet.config)),
                 "vae": (vae, convert_ldm_vae_checkpoint(ckpt, vae.config)),
                 "text_encoder": (text_encoder, convert_ldm_clip_checkpoint(ckpt))}
    else:
        from safetensors.torch import load_file

        parts = {}
        for name, net in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder)):
            files = sorted((source / name).glob("*.safetensors"))
            if len(files) != 1:
                raise ModelFileError(f"{source / name} should hold one .safetensors file, holds {[f.name for f in files]}")
            parts[name] = (net, load_file(str(files[0])))
    for name, (net, state) in parts.items():
        expected = net.state_dict()
        state = {k: v for k, v in state.items() if k in expected or not k.endswith("position_ids")}
        try:
            check_state_dict(f"model {manifest.id} ({name})", expected, state)
        except ModelFileError as err:
            hint = (" (a single file of another architecture needs its config: `designerbox models add PATH "
                    "--config FOLDER --force`)") if single else ""
            raise ModelFileError(f"{err}{hint}") from None
        net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    tok_dir = config / "tokenizer" if (config / "tokenizer").is_dir() else manifest.folder / CONFIG_DIR / "tokenizer"
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    sched = json.loads((config / "scheduler" / "scheduler_config.json").read_text())
    ab = alphas_cumprod(sched.get("beta_schedule", "scaled_linear"), sched.get("num_train_timesteps", 1000),
                        sched.get("beta_start", 0.00085), sched.get("beta_end", 0.012)).float()
    prediction = {"epsilon": "eps", "v_prediction": "v"}[sched.get("prediction_type", "epsilon")]
    on_gpu = torch.device(device).type == "cuda"
    dtype = dtype or (torch.float16 if on_gpu else torch.float32)
    nets = [n.to(device).eval().requires_grad_(False) for n in (unet, vae, text_encoder)]
    if dtype != torch.float32:
        nets = [n.to(dtype) for n in nets]
    model = LatentDiffusion(unet=nets[0], vae=nets[1], text_encoder=nets[2], tokenizer=tokenizer, alphas_cumprod=ab,
                            prediction=prediction, device=torch.device(device), dtype=dtype)
    if on_gpu:
        from designerbox.pipelines.speed import speed_up

        speed_up(model, compile=compile or os.environ.get("DESIGNERBOX_COMPILE") or None)
    return model
