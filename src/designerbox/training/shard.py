"""A compact training shard that travels to a GPU machine with no package index.

The training split at one resolution, with the frozen text encoder's caption embeddings already
computed (the GPU machine has no copy of the encoder's package), in files under 16 MiB each:

    shard.json              counts, resolution, file list, source dataset stats
    images-000.npz ...      uint8 (n, R, R, 3), zip-compressed (emoji on white compress ~3x)
    text.safetensors        pooled caption embeddings as int8 (N, V, 384) + per-vector fp32 scale,
                            and the empty caption's embedding (fp32)

`load_shard()` reads it straight into arrays; train_diffusion uses it when the data folder holds a
shard.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MAX_FILE = 15 * 2**20


def quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per vector (last dim): x ~ q * scale."""
    scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8) / 127
    return (x / scale).round().clamp(-127, 127).to(torch.int8), scale.float()


def write_shard(data: Path, out: Path, resolution: int = 32, log=print) -> dict:
    from safetensors.torch import save_file

    from designerbox.training import data as dataset
    from designerbox.training.train_diffusion import pooled_captions

    data, out = Path(data), Path(out)
    images, meta = dataset.load(data)
    keep = np.array([m["split"] == "train" for m in meta])
    text = pooled_captions(data, [m for m, k in zip(meta, keep) if k], log)  # the same cache as training
    x = torch.from_numpy(images[keep]).permute(0, 3, 1, 2).float()  # (N, 3, S, S)
    if x.shape[-1] != resolution:
        x = F.interpolate(x, size=resolution, mode="area")
    small = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (N, R, R, 3)
    out.mkdir(parents=True, exist_ok=True)
    per_file = max(1, MAX_FILE // (resolution * resolution * 3))  # uncompressed bound: always fits
    files = []
    for k, start in enumerate(range(0, len(small), per_file)):
        name = f"images-{k:03d}.npz"
        np.savez_compressed(out / name, images=small[start:start + per_file])
        files.append(name)
    q, scale = quantize(text["pooled"])
    save_file({"pooled_q": q.contiguous(), "pooled_scale": scale.contiguous(), "empty": text["empty"]},
              str(out / "text.safetensors"))
    files.append("text.safetensors")
    info = {"images": int(len(small)), "resolution": resolution, "captions_per_image": int(q.shape[1]),
            "files": files, "bytes": sum((out / f).stat().st_size for f in files),
            "source": json.loads((data / "stats.json").read_text())}
    (out / "shard.json").write_text(json.dumps(info, indent=2))
    return info


def load_shard(folder: Path) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """(images uint8 (N, R, R, 3), pooled (N, V, 384) float32, empty (384,))."""
    from safetensors.torch import load_file

    folder = Path(folder)
    info = json.loads((folder / "shard.json").read_text())
    images = np.concatenate([np.load(folder / f)["images"] for f in info["files"] if f.endswith(".npz")])
    text = load_file(str(folder / "text.safetensors"))
    pooled = text["pooled_q"].float() * text["pooled_scale"]
    pooled = F.normalize(pooled, dim=-1)  # undo the quantisation's small change of length
    if len(images) != len(pooled):
        raise ValueError(f"{folder}: {len(images)} images but {len(pooled)} caption embeddings")
    return images, pooled, text["empty"]
