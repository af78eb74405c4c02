"""Build runnable models from manifests: files checked first, then the network, then the weights."""

from __future__ import annotations

import hashlib
import json

import torch

from designerbox.models.cyclegan import ResnetGenerator
from designerbox.models.esrgan import RDN
from designerbox.models.evaluator import EvalEncoder
from designerbox.models.gan import Generator
from designerbox.pipelines.gan_generate import TextGAN
from designerbox.pipelines.onnx_cpu import cpu_backend
from designerbox.pipelines.text_to_image import TOKENS, PixelDiffusion, uses_tokens
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
    tokens = uses_tokens(unet_config)  # cross-attention inside: it attends to the prompt's token states
    weights_path = folder / "unet" / "diffusion_pytorch_model.safetensors"
    if not weights_path.is_file():
        raise ModelFileError(f"model {manifest.id} has no weights file: {weights_path} is missing")
    weights = load_file(str(weights_path))
    check_state_dict(f"model {manifest.id}", unet.state_dict(), weights)
    unet.load_state_dict({k: v.to(dtype) for k, v in weights.items()})
    unet = unet.to(device).eval().requires_grad_(False)
    if dtype != torch.float32:
        unet = unet.to(dtype)
    if torch.device(device).type == "cpu" and dtype == torch.float32 and cpu_backend() == "onnx":
        from designerbox.pipelines.onnx_cpu import onnx_unet
        from designerbox.settings import Settings

        key = hashlib.sha256((manifest.weights_sha256 + json.dumps(unet_config, sort_keys=True)).encode()).hexdigest()
        unet = onnx_unet(unet, key, Settings.from_env().home / "cache" / "onnx", size=manifest.native_size[0],
                         tokens=TOKENS if tokens else 0)
    if manifest.text_encoder != "all-minilm-l6-v2":
        raise ModelFileError(f"model {manifest.id} asks for text encoder {manifest.text_encoder!r}; "
                             "pixel diffusion models use 'all-minilm-l6-v2'")
    ab = alphas_cumprod(sched["beta_schedule"], sched["num_train_timesteps"],
                        sched.get("beta_start", 1e-4), sched.get("beta_end", 0.02)).float()
    return PixelDiffusion(unet=unet, text_encoder=shared_minilm(str(device)), alphas_cumprod=ab,
                          prediction=manifest.prediction or "eps", device=torch.device(device), dtype=dtype,
                          tokens=tokens)


def load_rdn_upscaler(manifest: ModelManifest, device: str | torch.device = "cpu") -> RDN:
    """An RDN super-resolution model (installed by `designerbox assets install`): config.json + model.safetensors."""
    import inspect

    from safetensors.torch import load_file

    folder = manifest.folder
    verify_files(folder, manifest.files)
    config = json.loads((folder / "config.json").read_text())
    valid = set(inspect.signature(RDN).parameters)
    unknown = sorted(set(config) - valid) if isinstance(config, dict) else "(not a JSON object)"
    if unknown:
        raise ModelFileError(f"{folder / 'config.json'} has unknown keys {unknown}; valid keys: {', '.join(sorted(valid))}")
    net = RDN(**config)
    if net.scale != manifest.scale:
        raise ModelFileError(f"model {manifest.id}: config.json says x{net.scale}, the manifest says x{manifest.scale}")
    weights = load_file(str(folder / "model.safetensors"))
    check_state_dict(f"model {manifest.id}", net.state_dict(), weights)
    net.load_state_dict(weights)
    return net.to(device).eval().requires_grad_(False)


def load_config_and_weights(manifest: ModelManifest, module: type[torch.nn.Module],
                            device: str | torch.device = "cpu") -> torch.nn.Module:
    """The common folder layout of our own networks: config.json (the module's keyword arguments) +
    model.safetensors (fp16 or fp32 on disk; run in fp32), every file's sha256 checked first."""
    import inspect

    from safetensors.torch import load_file

    folder = manifest.folder
    verify_files(folder, manifest.files)
    config = json.loads((folder / "config.json").read_text())
    valid = set(inspect.signature(module).parameters)
    unknown = sorted(set(config) - valid) if isinstance(config, dict) else "(not a JSON object)"
    if unknown:
        raise ModelFileError(f"{folder / 'config.json'} has unknown keys {unknown}; valid keys: {', '.join(sorted(valid))}")
    net = module(**config)
    weights = load_file(str(folder / "model.safetensors"))
    check_state_dict(f"model {manifest.id}", net.state_dict(), weights)
    net.load_state_dict({k: v.float() for k, v in weights.items()})
    return net.to(device).eval().requires_grad_(False)


def load_cyclegan_filter(manifest: ModelManifest, device: str | torch.device = "cpu") -> ResnetGenerator:
    """A CycleGAN generator used as a filter (installed by `designerbox assets install vintage-photo`)."""
    return load_config_and_weights(manifest, ResnetGenerator, device)


def load_evaluator(manifest: ModelManifest, device: str | torch.device = "cpu") -> EvalEncoder:
    """The DesignerBox evaluator (training/train_evaluator.py exports it)."""
    return load_config_and_weights(manifest, EvalEncoder, device)


def load_text_gan(manifest: ModelManifest, device: str | torch.device = "cpu") -> TextGAN:
    """A DesignerBox text-conditioned GAN (training/train_gan.py exports it): config.json (Generator
    kwargs) + model.safetensors (the EMA generator)."""
    if manifest.text_encoder != "all-minilm-l6-v2":
        raise ModelFileError(f"model {manifest.id} asks for text encoder {manifest.text_encoder!r}; "
                             "dbx-gan models use 'all-minilm-l6-v2'")
    net = load_config_and_weights(manifest, Generator, device)
    if [net.resolution] * 2 != list(manifest.native_size):
        raise ModelFileError(f"model {manifest.id}: config.json draws {net.resolution}px, the manifest says "
                             f"native_size {list(manifest.native_size)}")
    return TextGAN(generator=net, text_encoder=shared_minilm(str(device)), device=torch.device(device))


def load_model(manifest: ModelManifest, device: str | torch.device = "cpu"):
    """The loader for a manifest's family and kind."""
    if manifest.kind == "diffusion" and manifest.family == "dbx-pixel-unet":
        return load_pixel_diffusion(manifest, device)
    if manifest.kind == "upscaler" and manifest.family == "isr-rdn":
        return load_rdn_upscaler(manifest, device)
    if manifest.kind == "gan" and manifest.family == "dbx-gan":
        return load_text_gan(manifest, device)
    if manifest.kind == "filter" and manifest.family == "cyclegan-resnet":
        return load_cyclegan_filter(manifest, device)
    if manifest.kind == "evaluator" and manifest.family == "dbx-eval":
        return load_evaluator(manifest, device)
    if manifest.kind == "diffusion" and manifest.family in ("sd15", "sd2", "sdxl", "sdxl-refiner", "sd3", "flux-dev",
                                                                  "flux-schnell"):
        from designerbox.registry.user_checkpoints import load_stable_diffusion

        return load_stable_diffusion(manifest, device)
    raise ModelFileError(f"model {manifest.id}: no loader for kind {manifest.kind!r}, family {manifest.family!r} yet")
