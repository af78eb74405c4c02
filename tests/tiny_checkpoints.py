"""The set-up shared by the tests of user Stable Diffusion checkpoints (test_stable_diffusion, test_sd2,
test_sdxl, test_sdxl_refiner): tiny random-weight components built from configs, the packaged scheduler
of a family, one pipeline saved the two ways users keep checkpoints (a diffusers folder, and one
.safetensors file under the original key names with a config folder beside it), and `models add`.

Each test file keeps what is its own: the configs, the key mapping and the pipeline class of its family.
Imported as `from tiny_checkpoints import ...` (pytest puts tests/ on sys.path, as for server_util).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch


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


def add_model(args, capsys) -> dict:
    """`designerbox models add ARGS --json`, which must succeed; its JSON report."""
    from designerbox.cli import main

    assert main(["models", "add", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)
