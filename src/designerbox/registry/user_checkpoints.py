"""A user's Stable Diffusion checkpoints: register them (`designerbox models add PATH`) and load them.

Registering writes a model folder under $DESIGNERBOX_HOME/models/<id>/ that points at the user's
file or folder where it lies (nothing is copied):

    manifest.json   family, kind diffusion, native size, licence (--licence, else what the files
                    state, else "unknown": registry/licences.py), every file with its sha256 (the
                    weights first: images record that hash, and its first 10 hex digits as A1111's
                    AutoV2 short hash)
    config/         a single file's architecture (a diffusers-format config folder: model_index.json,
                    unet/, vae/, text_encoder/ [, text_encoder_2/], scheduler/), copied from
                    designerbox/configs/<family>/ or from the folder given with --config, plus
                    tokenizer/ [and tokenizer_2/] (registry.clip_tokenizer) when the source has none

so that loading needs no network and no cache. A single file is converted from the original LDM key
layout with diffusers' own conversion functions (diffusers.loaders.single_file_utils) and loaded
into networks built from config/; a diffusers folder's networks are built from its own configs and
read from its safetensors files. Pickle checkpoints are refused before anything is read (registry.files).

Supported here: SD 1.x (family sd15), SD 2.x (sd2), SDXL base (sdxl) and refiner (sdxl-refiner), by
one loader driven by the tables below: SD 2.x swaps CLIP ViT-L/14 for OpenCLIP ViT-H/14 (converted
from its OpenCLIP names, its tokenizer pads with "!"), SDXL adds a second text encoder and tokenizer,
the refiner keeps only that second one (conditioner.embedders.0 in its single file). SD3 and FLUX
diffusers folders go to registry/flow_models.py.

Parameterisation (eps or v): a diffusers folder's scheduler config says it. A single file does not
(SD 2.x-base, eps, and SD 2.x-768, v, have the same tensors), so it comes from `--prediction`, else
from an A1111 config beside the file (NAME.yaml with `parameterization: "v"`, as A1111 reads it),
else the family's usual one (v for SD 2.x, with a note saying so); it is written into the copied
scheduler config and the manifest.
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

LOADABLE = ("sd15", "sd2", "sdxl", "sdxl-refiner")
CONFIG_DIR = "config"
# the networks and tokenizers of each family, by their diffusers folder names
FAMILY_NETS = {"sd15": ("unet", "vae", "text_encoder"), "sd2": ("unet", "vae", "text_encoder"),
               "sdxl": ("unet", "vae", "text_encoder", "text_encoder_2"),
               "sdxl-refiner": ("unet", "vae", "text_encoder_2")}
FAMILY_TOKENIZERS = {"sd15": ("tokenizer",), "sd2": ("tokenizer",), "sdxl": ("tokenizer", "tokenizer_2"),
                     "sdxl-refiner": ("tokenizer_2",)}
# the padding token of each tokenizer: OpenCLIP's (SD 2.x, SDXL's tokenizer_2) is "!" (id 0), as published
PAD_TOKENS = {"sd15": {"tokenizer": "<|endoftext|>"}, "sd2": {"tokenizer": "!"},
              "sdxl": {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}, "sdxl-refiner": {"tokenizer_2": "!"}}
# where a single file keeps each family's text encoders (the original LDM / SGM names)
OPEN_CLIP_PREFIXES = {("sd2", "text_encoder"): "cond_stage_model.model.",
                      ("sdxl", "text_encoder_2"): "conditioner.embedders.1.model.",
                      ("sdxl-refiner", "text_encoder_2"): "conditioner.embedders.0.model."}
TEXT_ENCODERS = {"sd15": "clip-vit-l-14", "sd2": "openclip-vit-h-14", "sdxl": "clip-vit-l-14+openclip-vit-bigg-14",
                 "sdxl-refiner": "openclip-vit-bigg-14"}
DEFAULTS = {"sd15": {"sampler": "dpmpp_2m", "schedule": "karras", "steps": 25, "cfg_scale": 7.0},
            "sd2": {"sampler": "dpmpp_2m", "schedule": "karras", "steps": 25, "cfg_scale": 7.0},
            "sdxl": {"sampler": "dpmpp_2m", "schedule": "karras", "steps": 30, "cfg_scale": 7.0},
            "sdxl-refiner": {"sampler": "dpmpp_2m", "schedule": "karras", "steps": 30, "cfg_scale": 7.0}}
PREDICTIONS = {"eps": "epsilon", "v": "v_prediction"}  # ours -> diffusers' scheduler prediction_type


def packaged_config(family: str) -> Path:
    return Path(str(resources.files("designerbox").joinpath("configs", family)))


def model_id_for(path: Path) -> str:
    """A manifest id from a file or folder name: lower case, [a-z0-9._-], at most 64 characters."""
    stem = path.name if path.is_dir() else path.stem
    slug = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")[:64]
    return slug if len(slug) >= 2 else f"model-{slug or 'x'}"


def a1111_yaml_prediction(path: Path) -> str | None:
    """The parameterisation an A1111 config beside a single file gives (NAME.yaml, as A1111 looks for
    it; v2-inference-v.yaml says `parameterization: "v"`, eps configs say nothing), or None without one."""
    yaml = path.with_suffix(".yaml")
    if not yaml.is_file():
        return None
    m = re.search(r"""^\s*parameterization:\s*["']?(\w+)""", yaml.read_text(errors="replace"), re.MULTILINE)
    return "v" if m and m.group(1) == "v" else "eps"


def resolve_prediction(path: Path, found, prediction: str | None):
    """The family with its parameterisation settled (see the module docstring): a folder's scheduler
    decides (a --prediction that disagrees is an error); a single file takes --prediction, then an
    A1111 .yaml beside it, then the family's usual one, with a note saying which."""
    from dataclasses import replace

    from designerbox.registry.families import sd2_family

    if prediction is not None and prediction not in PREDICTIONS:
        raise ModelFileError(f"unknown prediction {prediction!r}; choose one of: {', '.join(PREDICTIONS)}")
    if path.is_dir():
        if prediction is not None and prediction != found.prediction:
            raise ModelFileError(f"{path.name}: its scheduler/scheduler_config.json says {found.prediction}-prediction, "
                                 f"not {prediction}; a diffusers folder's scheduler config decides (edit its "
                                 "prediction_type, or leave out --prediction)")
        return found
    how = "as given with --prediction"
    if prediction is None and (prediction := a1111_yaml_prediction(path)) is not None:
        how = f"from {path.with_suffix('.yaml').name} beside the file"
    if prediction is None:
        return found  # the family's usual parameterisation, and its note when that is a guess
    note = f"{prediction}-prediction {how}"
    if found.id == "sd2":
        return sd2_family(prediction, note)
    return replace(found, prediction=prediction, note=note)


def add_checkpoint(path: Path, home: Path, cache: Path, model_id: str | None = None, family: str | None = None,
                   config: Path | None = None, force: bool = False,
                   prediction: str | None = None, offload: str | None = None,
                   licence: str | None = None) -> tuple[Path, dict]:
    """Register a .safetensors file or a diffusers folder as a user model; returns its folder and a report.

    family      what the user says it is: checked against what the tensors say
    config      a diffusers-format config folder for a single file of a non-standard architecture
    prediction  "eps" or "v" for a single file (SD 2.x-base is eps, SD 2.x-768 v); see resolve_prediction
    offload     "model" or "none": the manifest's CPU offload default (pipelines/offload.py)
    licence     a licence id of registry/licences.py; default: what the files state, else "unknown"
    """
    from designerbox.registry.clip_tokenizer import copy_tokenizer

    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise ModelFileError(f"no such file or folder: {path}")
    if path.is_file():
        refuse_pickle(path)
        if path.suffix.lower() != ".safetensors":
            raise ModelFileError(f"{path.name}: only .safetensors files (or diffusers folders) can be added")
    from designerbox.registry import licences

    try:
        chosen = licences.get(licence).id if licence is not None else None
    except licences.UnknownLicenceError as err:
        raise ModelFileError(str(err)) from None
    found = detect(path)
    if family is not None and family != found.id:
        known = ", ".join(FAMILIES)
        if family not in FAMILIES:
            raise ModelFileError(f"unknown family {family!r}; known families: {known}")
        raise ModelFileError(f"{path.name} was given as {FAMILIES[family].name} ({family}), but its tensors are "
                             f"{found.name} ({found.id}); leave out --family to use what the file is")
    from designerbox.registry import flow_models

    if found.id not in LOADABLE + flow_models.FLOW_FAMILIES:
        raise ModelFileError(f"{path.name} is {found.name} ({found.id}); DesignerBox loads only "
                             f"{', '.join(LOADABLE + flow_models.FLOW_FAMILIES)} checkpoints so far")
    flow = found.id in flow_models.FLOW_FAMILIES
    flow_multiple = flow_models.check_folder(path, found.id) if flow and path.is_dir() else None
    found = resolve_prediction(path, found, prediction)
    licence_note = None
    if chosen is not None:
        licence, licence_source = chosen, "--licence"
    elif (stated := licences.stated_licence(path)) is not None:
        (text, licence_source), known = stated, licences.find(stated[0])
        licence = known.id if known else text
        if known is None:
            licence_note = f"{licence_source} names licence {text!r}, which DesignerBox's table does not know"
    else:
        licence, licence_source = licences.UNKNOWN, "none given or stated"
    if licence_note is None and licences.flag(licence)["commercial_use"] == "unknown":
        hints = ", ".join(f"{b.id} ({b.used_by})" for b in licences.base_licences(found.id))
        licence_note = "licence unknown" + (f"; the base models of {found.id} are under {hints}: if it is one of "
                                            "them, say so" if hints else "") + " with --licence ID --force"
    model_id = model_id or model_id_for(path)
    dest = Path(home) / "models" / model_id
    if dest.exists() and not force:
        raise ModelFileError(f"a model with id {model_id!r} already exists ({dest}); choose another id or replace it")
    tmp = dest.with_name(f".add-{model_id}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        # 1. the files the model is made of, weights first, hashed
        if path.is_file() and flow:  # SD3 / FLUX: what the file lacks comes from the --config diffusers folder
            from designerbox.registry.flow_single_file import prepare

            (tmp / CONFIG_DIR).mkdir()
            used = prepare(path, found.id, tmp / CONFIG_DIR, Path(config).resolve() if config else None)
            weights = [path] + [f for name in used["from_folder"] for f in sorted((Path(config) / name).glob("*"))
                                if f.is_file() and f.suffix in (".safetensors", ".json")]
            flow_multiple = flow_models.config_multiple(tmp / CONFIG_DIR, found.id)
        elif path.is_file():
            weights = [path]
            shutil.copytree(Path(config) if config else packaged_config(found.id), tmp / CONFIG_DIR,
                            ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.ckpt", "*.pt"))
            sched = tmp / CONFIG_DIR / "scheduler" / "scheduler_config.json"  # the parameterisation settled above
            sched.write_text(json.dumps(json.loads(sched.read_text()) | {
                "prediction_type": PREDICTIONS[found.prediction]}, indent=2) + "\n")
        else:
            weights = sorted(path.glob("*/*.safetensors"),  # the denoiser first: its hash is the model's
                             key=lambda p: (p.parent.name not in ("unet", "transformer"), str(p)))
            pickles = [p for p in path.glob("*/*") if p.suffix.lower() in (".bin", ".ckpt", ".pt", ".pth")]
            if not weights or any(not list(p.parent.glob("*.safetensors")) for p in pickles):
                raise ModelFileError(f"{path} holds pickle weights ({[p.name for p in pickles][:3]}) without "
                                     "safetensors beside them; DesignerBox loads only .safetensors")
            (tmp / CONFIG_DIR).mkdir()
        # 2. the tokenizers, when neither the source nor the config brings them
        pads = flow_models.CLIP_TOKENIZERS[found.id] if flow else PAD_TOKENS[found.id]
        for name, pad in pads.items():
            if not (path / name).is_dir() and not (tmp / CONFIG_DIR / name).is_dir():
                copy_tokenizer(Path(cache), tmp / CONFIG_DIR / name, pad_token=pad)
        local = sorted(p.relative_to(tmp).as_posix() for p in (tmp / CONFIG_DIR).rglob("*") if p.is_file())
        theirs = [p for p in sorted(path.rglob("*.json")) if path.is_dir()]
        files = [{"path": str(p.resolve()), "sha256": file_sha256(p), "bytes": p.stat().st_size}
                 for p in weights + theirs]
        files += [{"path": n, "sha256": file_sha256(tmp / n), "bytes": (tmp / n).stat().st_size} for n in local]
        # 3. the manifest; sizes must divide into the VAE's and then the UNet's downsampling
        arch = tmp / CONFIG_DIR if path.is_file() else path
        if flow:
            multiple = flow_multiple
        else:
            vae_levels = len(json.loads((arch / "vae" / "config.json").read_text())["block_out_channels"])
            unet_levels = len(json.loads((arch / "unet" / "config.json").read_text())["block_out_channels"])
            multiple = 2 ** (vae_levels - 1) * 2 ** (unet_levels - 1)
        manifest = {
            "id": model_id, "name": path.name, "family": found.id, "kind": "diffusion", "licence": licence,
            "description": f"{found.name}, user-supplied {'diffusers folder' if path.is_dir() else 'single file'} "
                           f"{path}" + (f"; {found.note}" if found.note else ""),
            "native_size": [found.native_size, found.native_size], "min_size": multiple, "max_size": 2048,
            "size_multiple": multiple, "prediction": found.prediction,
            "text_encoder": (flow_models.TEXT_ENCODERS if flow else TEXT_ENCODERS)[found.id],
            "defaults": (flow_models.DEFAULTS if flow else DEFAULTS)[found.id], "files": files,
        }
        if offload is not None:
            manifest["offload"] = offload
        ModelManifest.model_validate(manifest)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    m = ModelManifest.read(dest)
    return dest, {"id": model_id, "folder": str(dest), "family": found.id, "prediction": found.prediction,
                  "native_size": found.native_size, "source": str(path), "sha256": m.weights_sha256,
                  "hash": m.short_hash, "note": found.note or None, "licence": licence,
                  "commercial_use": licences.flag(licence)["commercial_use"], "licence_source": licence_source,
                  "licence_note": licence_note}


# --- loading --------------------------------------------------------------------------------------

def _source(manifest: ModelManifest) -> tuple[Path, bool]:
    """(the user's file or folder, whether it is a single file). A single file is the one absolute
    path of its manifest (its config lies in the model folder); a folder lists its JSON files too."""
    first = manifest.folder / manifest.files[0].path
    theirs = [f for f in manifest.files if Path(f.path).is_absolute()]
    return (first, True) if len(theirs) == 1 else (first.parent.parent, False)  # folder/unet/x.safetensors


def _build_net(config: Path, name: str) -> torch.nn.Module:
    """One network from its config folder, random weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if name in ("unet", "vae"):
        cls = UNet2DConditionModel if name == "unet" else AutoencoderKL
        return cls.from_config(cls.load_config(str(config / name)))
    cls = CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel
    return cls(CLIPTextConfig.from_json_file(str(config / name / "config.json")))


def _from_single_file(ckpt: dict[str, torch.Tensor], family: str, name: str,
                      net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """One network's tensors out of an original-layout checkpoint, by diffusers' own conversions."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
    )

    if name == "unet":
        return convert_ldm_unet_checkpoint(ckpt, net.config)  # model.diffusion_model.*
    if name == "vae":
        return convert_ldm_vae_checkpoint(ckpt, net.config)  # first_stage_model.*
    prefix = OPEN_CLIP_PREFIXES.get((family, name))
    if prefix is None:  # cond_stage_model.transformer.* (SD 1.x), conditioner.embedders.0.transformer.* (SDXL)
        return convert_ldm_clip_checkpoint(ckpt)
    # OpenCLIP names, fused QKV split, text_projection transposed
    state = convert_open_clip_checkpoint(net, ckpt, prefix=prefix)
    if family == "sd2":
        # SD 2.x conditions on the penultimate layer of its OpenCLIP, so the text encoder has one layer fewer
        # than the file; diffusers drops the last of the full-size 24 (resblocks.23), we drop whichever it is
        last = f"encoder.layers.{net.config.num_hidden_layers}."
        state = {k: v for k, v in state.items() if last not in k and k != "text_projection.weight"}
    return state


def _component_file(folder: Path) -> Path:
    """The weights of a diffusers component folder: its one .safetensors file, or the full-precision
    one where a variant (name.fp16.safetensors) lies beside it, as in the published folders."""
    files = sorted(folder.glob("*.safetensors"))
    plain = [f for f in files if f.name.count(".") == 1] or files
    if len(plain) != 1:
        raise ModelFileError(f"{folder} should hold one .safetensors file, holds {[f.name for f in files]}")
    return plain[0]


def _match_text_model_prefix(state: dict[str, torch.Tensor], expected: dict) -> dict[str, torch.Tensor]:
    """transformers >= 5.6 builds CLIPTextModel without its `text_model.` level (CLIPTextModelWithProjection
    keeps it), while checkpoints and older folders name the tensors text_model.*: add or drop the prefix
    so that either reads into either."""
    wants = any(k.startswith("text_model.") for k in expected)
    has = any(k.startswith("text_model.") for k in state)
    if has and not wants:
        return {k.removeprefix("text_model."): v for k, v in state.items()}
    if wants and not has:
        return {(k if k in expected else f"text_model.{k}"): v for k, v in state.items()}
    return state


def load_stable_diffusion(manifest: ModelManifest, device: str | torch.device = "cpu",
                          dtype: torch.dtype | None = None, compile: str | None = None,
                          vae_tiling: str | None = None, offload: str | None = None):
    """A LatentDiffusion (sd15, sd2) or LatentDiffusionXL (sdxl) from a registered file or folder,
    hash-checked first, fully offline.

    dtype: default float16 on a GPU, float32 on the CPU; a VAE whose config says force_upcast (SDXL's,
    which overflows in float16) stays in float32. On a GPU the networks also get the speed-ups of
    pipelines.speed (channels-last, fused QKV; `compile`, default $DESIGNERBOX_COMPILE, e.g.
    "reduce-overhead": CUDA graphs, 3.6x faster per image on an H100, 44 s warm-up, 8 s from the cache).
    vae_tiling: "auto" (tiles above 1536x1536 pixels), "on" or "off"; default $DESIGNERBOX_VAE_TILING.
    offload: "model" keeps the networks in CPU memory and moves each to `device` only while it runs
    (pipelines/offload.py; no torch.compile then), "none"; default $DESIGNERBOX_OFFLOAD, else the
    manifest's `offload`, else none."""
    from safetensors.torch import load_file
    from transformers import CLIPTokenizer

    from designerbox.pipelines.stable_diffusion import LatentDiffusion, vae_tiling_mode
    from designerbox.pipelines.stable_diffusion_xl import LatentDiffusionXL
    from designerbox.registry.loading import check_state_dict
    from designerbox.samplers.discrete import alphas_cumprod

    from designerbox.registry.flow_models import FLOW_FAMILIES, load_flow_model

    if manifest.family in FLOW_FAMILIES:
        return load_flow_model(manifest, device, dtype=dtype, vae_tiling=vae_tiling, offload=offload)
    if manifest.family not in LOADABLE:
        raise ModelFileError(f"model {manifest.id}: family {manifest.family!r} cannot be loaded yet "
                             f"(loadable: {', '.join(LOADABLE)})")
    from designerbox.pipelines.offload import enable_model_offload, offload_mode

    vae_tiling = vae_tiling_mode(vae_tiling or os.environ.get("DESIGNERBOX_VAE_TILING"))  # before any loading
    offload = offload_mode(offload or os.environ.get("DESIGNERBOX_OFFLOAD") or manifest.offload)
    verify_files(manifest.folder, manifest.files)
    source, single = _source(manifest)
    config = manifest.folder / CONFIG_DIR if single else source
    found = detect(source)
    if found.id != manifest.family:
        raise ModelFileError(f"model {manifest.id}: its manifest says {manifest.family}, its tensors {found.id}")
    # 1. the networks from their configs, then their tensors: converted from the original layout, or as saved
    nets = {name: _build_net(config, name) for name in FAMILY_NETS[found.id]}
    ckpt = load_file(str(source)) if single else None
    for name, net in nets.items():
        try:
            state = (_from_single_file(ckpt, found.id, name, net) if single
                     else load_file(str(_component_file(source / name))))
        except KeyError as err:  # diffusers' converters index the tensors a family must have
            raise ModelFileError(f"model {manifest.id} ({name}): the file lacks tensor {err} of the original "
                                 f"{FAMILIES[found.id].name} layout (from an incomplete or other checkpoint)") from None
        expected = net.state_dict()
        state = _match_text_model_prefix(state, expected) if name.startswith("text_encoder") else state
        state = {k: v for k, v in state.items() if k in expected or not k.endswith("position_ids")}
        try:
            check_state_dict(f"model {manifest.id} ({name})", expected, state)
        except ModelFileError as err:
            hint = (" (a single file of another architecture needs its config: `designerbox models add PATH "
                    "--config FOLDER --force`)") if single else ""
            raise ModelFileError(f"{err}{hint}") from None
        net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    del ckpt
    # 2. the tokenizers: the folder's own, else the ones written at registration
    tokenizers = {}
    for name in FAMILY_TOKENIZERS[found.id]:
        folder = config / name if (config / name).is_dir() else manifest.folder / CONFIG_DIR / name
        tokenizers[name] = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    # 3. the noise table and parameterisation
    sched = json.loads((config / "scheduler" / "scheduler_config.json").read_text())
    ab = alphas_cumprod(sched.get("beta_schedule", "scaled_linear"), sched.get("num_train_timesteps", 1000),
                        sched.get("beta_start", 0.00085), sched.get("beta_end", 0.012)).float()
    prediction = {"epsilon": "eps", "v_prediction": "v"}[sched.get("prediction_type", "epsilon")]
    # 4. device and dtype
    on_gpu = torch.device(device).type == "cuda"
    dtype = dtype or (torch.float16 if on_gpu else torch.float32)
    for name, net in nets.items():
        upcast = name == "vae" and found.id.startswith("sdxl") and net.config.get("force_upcast", False)
        where = "cpu" if offload == "model" else device  # offloaded networks wait in CPU memory
        nets[name] = net.to(where, torch.float32 if upcast else dtype).eval().requires_grad_(False)
    common = dict(alphas_cumprod=ab, prediction=prediction, device=torch.device(device), dtype=dtype,
                  vae_tiling=vae_tiling)
    if found.id == "sdxl":
        model = LatentDiffusionXL(**nets, **tokenizers, **common)
    elif found.id == "sdxl-refiner":  # no CLIP ViT-L; the aesthetic score in place of the target size
        index = config / "model_index.json"
        if index.is_file() and not json.loads(index.read_text()).get("requires_aesthetics_score", True):
            raise ModelFileError(f"model {manifest.id}: an SDXL image-to-image folder without the refiner's aesthetic "
                                 "score conditioning (requires_aesthetics_score false) is not supported")
        model = LatentDiffusionXL(**nets, text_encoder=None, tokenizer=None, **tokenizers, **common,
                                  aesthetic_score=6.0)
    else:
        model = LatentDiffusion(**nets, **tokenizers, **common)
    if on_gpu:
        from designerbox.pipelines.speed import speed_up

        mode = compile or os.environ.get("DESIGNERBOX_COMPILE") or None
        speed_up(model, compile=None if offload == "model" else mode)
    if offload == "model":
        enable_model_offload(model, device)
    return model
