"""Which architecture a user's checkpoint is, from its tensor names alone.

A single .safetensors file is recognised by the key prefixes of the original (LDM / SGM / BFL)
layouts, read from the header without loading any tensor data; a diffusers-format folder by its
model_index.json (or, without one, by its text_encoder_2/ and tokenizer_2/ subfolders: SDXL). Key prefixes as diffusers' single_file_utils.CHECKPOINT_KEY_NAMES checks them:

  sd15         model.diffusion_model.* + cond_stage_model.transformer.* (CLIP ViT-L/14, eps)
  sd2          model.diffusion_model.* + cond_stage_model.model.* (OpenCLIP ViT-H/14); a single file does
               not say its parameterisation (eps for SD 2.x-base at 512 px, v for SD 2.0/2.1-768):
               registry.user_checkpoints takes it from the user, an A1111 .yaml beside the file, or
               assumes v; a diffusers folder's scheduler config says it
  sdxl         model.diffusion_model.* + conditioner.embedders.0.transformer.* (CLIP ViT-L/14) +
               conditioner.embedders.1.model.* (OpenCLIP ViT-bigG/14); the UNet's size and crop
               embedding (model.diffusion_model.label_emb.*) is checked when the file is loaded
  sdxl-refiner conditioner.embedders.0 only, an OpenCLIP bigG
  sd3          model.diffusion_model.joint_blocks.*
  flux         double_blocks.* / single_blocks.* (optionally under model.diffusion_model.);
               guidance_in.* marks FLUX dev, its absence schnell
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from designerbox.registry.files import ModelFileError, read_safetensors_header


@dataclass(frozen=True)
class Family:
    id: str
    name: str
    prediction: str         # "eps", "v" or "flow"
    native_size: int
    note: str = ""          # what was assumed


FAMILIES = {
    "sd15": Family("sd15", "Stable Diffusion 1.x", "eps", 512),
    "sd2": Family("sd2", "Stable Diffusion 2.x", "v", 768,
                  "a single SD 2.x file does not record its parameterisation: v-prediction at 768 px is assumed "
                  "(SD 2.0/2.1-768); for a 512-px eps model (SD 2.x-base) add it with --prediction eps"),
    "sdxl": Family("sdxl", "Stable Diffusion XL base", "eps", 1024),
    "sdxl-refiner": Family("sdxl-refiner", "Stable Diffusion XL refiner", "eps", 1024),
    "sd3": Family("sd3", "Stable Diffusion 3", "flow", 1024),
    "flux-dev": Family("flux-dev", "FLUX.1 dev", "flow", 1024),
    "flux-schnell": Family("flux-schnell", "FLUX.1 schnell", "flow", 1024),
}
# diffusers pipeline class (model_index.json _class_name) -> family
PIPELINE_FAMILIES = {"StableDiffusionPipeline": "sd15", "StableDiffusionXLPipeline": "sdxl",
                     "StableDiffusionXLImg2ImgPipeline": "sdxl-refiner", "StableDiffusion3Pipeline": "sd3",
                     "FluxPipeline": "flux-dev"}


def sd2_family(prediction: str, note: str = "") -> Family:
    """SD 2.x with a known parameterisation: v at 768 px (SD 2.0/2.1-768), eps at 512 px (SD 2.x-base)."""
    return Family("sd2", FAMILIES["sd2"].name, prediction, 768 if prediction == "v" else 512, note)


class UnknownFamilyError(ModelFileError):
    """The tensors or the folder match none of the known layouts."""


def _has(keys: list[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def family_from_keys(keys: list[str], where: str = "this checkpoint") -> Family:
    """The family of a checkpoint in an original (non-diffusers) key layout."""
    if _has(keys, "model.diffusion_model.joint_blocks."):
        return FAMILIES["sd3"]
    flux = [k.removeprefix("model.diffusion_model.") for k in keys]
    if _has(flux, "double_blocks.") and _has(flux, "single_blocks."):
        return FAMILIES["flux-dev" if _has(flux, "guidance_in.") else "flux-schnell"]
    if (_has(keys, "model.diffusion_model.") and _has(keys, "conditioner.embedders.0.transformer.")
            and _has(keys, "conditioner.embedders.1.model.")):
        return FAMILIES["sdxl"]
    if _has(keys, "conditioner.embedders.0.model."):
        return FAMILIES["sdxl-refiner"]
    if _has(keys, "model.diffusion_model.input_blocks."):
        if _has(keys, "cond_stage_model.model."):
            return FAMILIES["sd2"]
        if _has(keys, "cond_stage_model.transformer."):
            return FAMILIES["sd15"]
    prefixes = sorted({".".join(k.split(".")[:2]) for k in keys if k != "__metadata__"})
    raise UnknownFamilyError(
        f"{where} is not a checkpoint layout DesignerBox knows: its {len(keys)} tensors start with "
        f"{prefixes[:8]}{' ...' if len(prefixes) > 8 else ''}; known families: {', '.join(FAMILIES)} (single files "
        "in the original A1111/ComfyUI layout, or diffusers folders with model_index.json)")


def detect_file(path: Path) -> Family:
    """The family of a single .safetensors file, from its header (no tensor data is read)."""
    header = read_safetensors_header(Path(path))  # refuses pickles, truncated and corrupt files
    return family_from_keys([k for k in header if k != "__metadata__"], where=str(path))


def _sdxl_from_components(components: set[str]) -> Family:
    """SDXL base has two text encoders; the refiner only the second (OpenCLIP bigG)."""
    return FAMILIES["sdxl" if "text_encoder" in components else "sdxl-refiner"]


def detect_folder(folder: Path) -> Family:
    """The family of a diffusers-format folder, from model_index.json (and the scheduler's prediction_type).

    SDXL base and refiner share pipeline classes (a base can be saved as an img2img pipeline): the
    components tell them apart. A folder without model_index.json is taken as SDXL when it holds
    text_encoder_2/ and tokenizer_2/ beside unet/ (the second text encoder is SDXL's alone)."""
    folder = Path(folder)
    index = folder / "model_index.json"
    subfolders = {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()
    if not index.is_file():
        if {"unet", "text_encoder_2", "tokenizer_2"} <= subfolders:
            return _sdxl_from_components(subfolders)
        raise UnknownFamilyError(f"{folder} is not a diffusers model folder (no model_index.json, and no unet/ + "
                                 f"text_encoder_2/ + tokenizer_2/ of SDXL); known families: {', '.join(FAMILIES)}")
    model_index = json.loads(index.read_text())
    cls = model_index.get("_class_name")
    if cls not in PIPELINE_FAMILIES:
        raise UnknownFamilyError(f"{index} names pipeline {cls!r}; known: {', '.join(PIPELINE_FAMILIES)}")
    family = FAMILIES[PIPELINE_FAMILIES[cls]]
    if family.id == "flux-dev":  # dev and schnell share the pipeline class: dev embeds the guidance scale
        tc = folder / "transformer" / "config.json"
        guided = json.loads(tc.read_text()).get("guidance_embeds", False) if tc.is_file() else True
        return FAMILIES["flux-dev" if guided else "flux-schnell"]
    if family.id in ("sdxl", "sdxl-refiner"):
        listed = {k for k, v in model_index.items() if isinstance(v, list) and v[0] is not None}
        return _sdxl_from_components(listed)
    if family.id == "sd15":  # SD 1.x and 2.x share the pipeline class: the text encoder tells them apart,
        # OpenCLIP ViT-H/14 (1024 wide, gelu) against OpenAI's CLIP ViT-L/14 (768, quick_gelu)
        te = folder / "text_encoder" / "config.json"
        te_config = json.loads(te.read_text()) if te.is_file() else {}
        if te_config.get("hidden_size") == 1024 or te_config.get("hidden_act") == "gelu":
            sched = folder / "scheduler" / "scheduler_config.json"
            pred = json.loads(sched.read_text()).get("prediction_type", "epsilon") if sched.is_file() else "epsilon"
            return sd2_family("v" if pred == "v_prediction" else "eps")
    return family


def detect(path: Path) -> Family:
    path = Path(path)
    return detect_folder(path) if path.is_dir() else detect_file(path)
