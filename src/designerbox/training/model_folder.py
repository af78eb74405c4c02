"""Create and update model folders: pixel diffusion models (manifest.json, unet/, scheduler/) and
GANs (manifest.json, config.json, model.safetensors).

Used to start a new model from a config with random weights (tests use tiny ones) and to record
file hashes after training writes new weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
HASHED = [WEIGHTS, "unet/config.json", "scheduler/scheduler_config.json"]


def update_manifest_files(model_dir: Path, names: list[str] = HASHED) -> None:
    """Record the sha256 and size of the model folder's files (`names`, weights first) in its manifest.json."""
    from designerbox.registry.files import file_sha256

    model_dir = Path(model_dir)
    path = model_dir / "manifest.json"
    if not path.exists():
        return
    manifest = json.loads(path.read_text())
    manifest["files"] = [{"path": n, "sha256": file_sha256(model_dir / n), "bytes": (model_dir / n).stat().st_size}
                         for n in names if (model_dir / n).exists()]
    path.with_suffix(".tmp").write_text(json.dumps(manifest, indent=2) + "\n")
    path.with_suffix(".tmp").replace(path)


def create_pixel_model(folder: Path, model_id: str, unet_config: dict, native: int, seed: int = 0,
                       prediction: str = "v", beta_schedule: str = "squaredcos_cap_v2", **manifest) -> Path:
    """A model folder with a randomly initialised UNet2DConditionModel (fp16 weights) and its manifest."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from safetensors.torch import save_file

    folder = Path(folder)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_config)
    unet.save_config(folder / "unet")
    save_file({k: v.half().contiguous() for k, v in unet.state_dict().items()}, str(folder / WEIGHTS))
    DDPMScheduler(num_train_timesteps=1000, beta_schedule=beta_schedule, clip_sample=False,
                  prediction_type={"v": "v_prediction", "eps": "epsilon"}[prediction]).save_config(folder / "scheduler")
    data = {
        "id": model_id, "name": model_id, "family": "dbx-pixel-unet", "kind": "diffusion", "licence": "MIT",
        "native_size": [native, native], "min_size": native, "max_size": native, "prediction": prediction,
        "text_encoder": "all-minilm-l6-v2",
        "defaults": {"sampler": "dpmpp_2m", "schedule": "karras", "steps": 20, "cfg_scale": 4.0}, "files": [],
    } | manifest
    (folder / "manifest.json").write_text(json.dumps(data, indent=2))
    update_manifest_files(folder)
    return folder


GAN_WEIGHTS = "model.safetensors"
GAN_HASHED = [GAN_WEIGHTS, "config.json"]


def create_gan_model(folder: Path, model_id: str, generator_config: dict, seed: int = 0, **manifest) -> Path:
    """A model folder with a randomly initialised models.gan.Generator (fp16 weights) and its manifest."""
    from safetensors.torch import save_file

    from designerbox.models.gan import Generator

    import inspect

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    defaults = {k: p.default for k, p in inspect.signature(Generator).parameters.items()}
    generator_config = json.loads(json.dumps(defaults | dict(generator_config)))  # every kwarg, tuples as lists
    torch.manual_seed(seed)
    net = Generator(**generator_config)
    (folder / "config.json").write_text(json.dumps(generator_config, indent=2) + "\n")
    save_file({k: v.half().contiguous() for k, v in net.state_dict().items()}, str(folder / GAN_WEIGHTS))
    side = net.resolution
    data = {
        "id": model_id, "name": model_id, "family": "dbx-gan", "kind": "gan", "licence": "MIT",
        "native_size": [side, side], "min_size": 16, "max_size": side, "size_multiple": side,
        "text_encoder": "all-minilm-l6-v2", "truncation": 1.0, "files": [],
    } | manifest
    (folder / "manifest.json").write_text(json.dumps(data, indent=2) + "\n")
    update_manifest_files(folder, GAN_HASHED)
    return folder
