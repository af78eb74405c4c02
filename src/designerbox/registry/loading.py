"""Build runnable models from manifests: files checked first, then the network, then the weights."""

from __future__ import annotations

import json

import torch

from designerbox.pipelines.text_to_image import PixelDiffusion
from designerbox.registry.files import ModelFileError, verify_files
from designerbox.registry.manifest import ModelManifest
from designerbox.registry.text_encoders import shared_minilm
from designerbox.samplers.discrete import alphas_cumprod


def check_state_dict(name: str, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> None:
    """Raise ModelFileError listing missing, unexpected and mis-shaped tensors (a few of each)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [f"{k}: file {tuple(found[k].shape)} vs config {tuple(v.shape)}"
              for k, v in expected.items() if k in found and tuple(found[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing (e.g. {missing[:3]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})" if unexpected else "",
                 f"{len(shapes)} with other shapes (e.g. {shapes[:2]})" if shapes else ""]
        raise ModelFileError(f"the tensors of {name} do not match its config: " + "; ".join(p for p in parts if p))


def load_pixel_diffusion(manifest: ModelManifest, device: str | torch.device = "cpu",
                         dtype: torch.dtype = torch.float32) -> PixelDiffusion:
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    folder = manifest.folder
    verify_files(folder, manifest.files)
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    unet = UNet2DConditionModel.from_config(unet_config)
    weights = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    check_state_dict(f"model {manifest.id}", unet.state_dict(), weights)
    unet.load_state_dict({k: v.to(dtype) for k, v in weights.items()})
    unet = unet.to(device).eval().requires_grad_(False)
    if dtype != torch.float32:
        unet = unet.to(dtype)
    if manifest.text_encoder != "all-minilm-l6-v2":
        raise ModelFileError(f"model {manifest.id} asks for text encoder {manifest.text_encoder!r}; "
                             "pixel diffusion models use 'all-minilm-l6-v2'")
    ab = alphas_cumprod(sched["beta_schedule"], sched["num_train_timesteps"],
                        sched.get("beta_start", 1e-4), sched.get("beta_end", 0.02)).float()
    return PixelDiffusion(unet=unet, text_encoder=shared_minilm(str(device)), alphas_cumprod=ab,
                          prediction=manifest.prediction or "eps", device=torch.device(device), dtype=dtype)


def load_model(manifest: ModelManifest, device: str | torch.device = "cpu"):
    """The loader for a manifest's family and kind."""
    if manifest.kind == "diffusion" and manifest.family == "dbx-pixel-unet":
        return load_pixel_diffusion(manifest, device)
    raise ModelFileError(f"model {manifest.id}: no loader for kind {manifest.kind!r}, family {manifest.family!r} yet")
