"""Grow a trained pixel UNet: add cross-attention to the caption's token states without changing
what it draws at the start.

The built-in v1 network sees a caption only as one pooled 384-d MiniLM vector added to its time
embedding; a caption's word must then steer shape through a single vector, and rockets and stars
do not come out (dbx-base-v1's card). Growing it keeps everything it has learnt:

  1. the same config with the chosen resolution levels (and the middle) turned into diffusers'
     cross-attention blocks (a Transformer2DModel after each ResNet: self-attention, cross-attention
     to the MiniLM token states, a feed-forward);
  2. every tensor the two networks share copied over;
  3. every new residual branch made silent: each Transformer2DModel's output projection and each new
     ResNet's last convolution start at zero, so the grown network computes exactly what the old one
     did, and training opens the new paths from there (function-preserving growth, as in Net2Net,
     Chen et al. 2016).

`designerbox train grow SRC DST` writes DST as a model folder (unet/, scheduler/, manifest.json)
that `designerbox train diffusion --model-dir DST` continues from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from designerbox.training.model_folder import update_manifest_files


def grown_config(config: dict, levels: tuple[int, ...], head_dim: int = 32) -> dict:
    """The config with cross-attention at `levels` (0 = the full-resolution level) and in the middle."""
    n = len(config["down_block_types"])
    bad = [lv for lv in levels if not 0 <= lv < n]
    if bad:
        raise ValueError(f"levels {bad} out of range: this UNet has levels 0..{n - 1}")
    out = dict(config)
    out["down_block_types"] = [("CrossAttnDownBlock2D" if i in levels else "DownBlock2D") for i in range(n)]
    out["up_block_types"] = [("CrossAttnUpBlock2D" if (n - 1 - i) in levels else "UpBlock2D") for i in range(n)]
    out["mid_block_type"] = "UNetMidBlock2DCrossAttn"
    # diffusers reads attention_head_dim as the number of heads per level (its historical naming)
    out["attention_head_dim"] = [max(1, c // head_dim) for c in config["block_out_channels"]]
    out["cross_attention_dim"] = 384
    out["transformer_layers_per_block"] = 1
    return out


def grow(src: Path, dst: Path, levels: tuple[int, ...] = (1, 2), head_dim: int = 32, log=print) -> dict:
    """Write the grown model folder `dst` from the trained model folder `src`; returns a summary."""
    from diffusers import UNet2DConditionModel

    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise FileExistsError(f"{dst} exists; choose a new folder for the grown model")
    config = json.loads((src / "unet" / "config.json").read_text())
    old = load_file(str(src / "unet" / "diffusion_pytorch_model.safetensors"))
    new_config = grown_config(config, levels, head_dim)
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(new_config)
    state = unet.state_dict()
    copied = [k for k in state if k in old and old[k].shape == state[k].shape]
    mismatched = [k for k in state if k in old and old[k].shape != state[k].shape]
    dropped = [k for k in old if k not in state]
    if mismatched or dropped:
        raise ValueError(f"cannot grow {src}: tensors differ in shape {mismatched[:5]} or are gone {dropped[:5]}")
    new_keys = [k for k in state if k not in old]
    for k in copied:
        state[k] = old[k].to(state[k].dtype)
    silenced = []
    for k in new_keys:  # the last layer of every new residual branch
        if (".attentions." in k and ".proj_out." in k) or (".resnets." in k and ".conv2." in k):
            state[k] = torch.zeros_like(state[k])
            silenced.append(k)
    unet.load_state_dict(state)

    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("*.safetensors", "training.json", "MODEL_CARD.md"))
    (tmp / "unet" / "config.json").write_text(json.dumps(new_config, indent=2))
    save_file({k: v.detach().half().contiguous() for k, v in unet.state_dict().items()},
              str(tmp / "unet" / "diffusion_pytorch_model.safetensors"))
    if (src / "training.json").exists():  # the grown network continues the old one's count
        shutil.copy(src / "training.json", tmp / "training.json")
    manifest = json.loads((tmp / "manifest.json").read_text())
    manifest.update(id=dst.name, name=f"{manifest.get('name', src.name)} (grown: cross-attention)")
    manifest.pop("card", None)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    update_manifest_files(tmp)
    tmp.rename(dst)
    params = sum(v.numel() for v in unet.state_dict().values())
    summary = {"src": str(src), "dst": str(dst), "levels": list(levels), "parameters": params,
               "copied": len(copied), "new": len(new_keys), "silenced": len(silenced)}
    log(json.dumps(summary))
    return summary
