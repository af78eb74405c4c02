"""A compact training shard that travels to a GPU machine with no package index.

The training split at one resolution, with the frozen text encoder's caption embeddings already
computed (the GPU machine has no copy of the encoder's package), in files under 15 MiB each:

    shard.json              counts, resolution, file list, source dataset stats
    images-000.npz ...      uint8 (n, R, R, 3), zip-compressed (icons on white compress ~3x)
    text-index.safetensors  "index": int32 (N, V), each image's caption variants as rows of the
                            table of distinct captions (captions repeat across styles and icon
                            sets); "empty": the empty caption's embedding (fp32)
    text-000.safetensors .. the table: the pooled embedding of each distinct caption quantised to
                            6 bits per value (symmetric, one fp32 scale per vector; cosine to the
                            float vector 0.9995 on average), four values packed in three bytes

At 32x32 the full dataset (27.6k training images, 59k distinct captions) is about 44 MB: images
27 MB, captions 17 MB (int8 would be 23 MB, float32 91 MB).

A shard for a network with cross-attention (`tokens=True`) carries the captions as token ids and
the text encoder cut down to them (training/text_slice.py) in place of the pooled table:

    text-tokens.safetensors "ids" int16 (all token ids, distinct captions one after another, the
                            empty caption last), "offsets" int32 (U + 2)
    encoder.safetensors     the cut-down MiniLM (~14 MB); its config in shard.json

and the loader computes token states and pooled embeddings from them on the training device.
`load_shard()` reads it straight into arrays; train_diffusion uses it when the data folder holds a
shard.json. Shards written before the table (text.safetensors with int8 "pooled_q") still load.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MAX_FILE = 15 * 2**20
BITS = 6
LEVELS = 2 ** (BITS - 1) - 1  # values -31..31, stored as 1..63


def quantize(x: torch.Tensor, levels: int = 127) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per vector (last dim): x ~ q * scale with integer q in [-levels, levels]."""
    scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8) / levels
    return (x / scale).round().clamp(-levels, levels).to(torch.int8), scale.float()


def pack6(q: np.ndarray) -> np.ndarray:
    """int (U, D) in [-31, 31], D a multiple of 4 -> uint8 (U, 3D/4): four 6-bit values per 3 bytes."""
    v = (q.astype(np.int32) + LEVELS + 1).reshape(len(q), -1, 4)               # 1..63
    word = v[..., 0] | v[..., 1] << 6 | v[..., 2] << 12 | v[..., 3] << 18       # 24 bits
    return np.stack([(word >> s) & 0xFF for s in (0, 8, 16)], -1).astype(np.uint8).reshape(len(q), -1)


def unpack6(p: np.ndarray) -> np.ndarray:
    """The inverse of pack6: uint8 (U, 3D/4) -> int8 (U, D)."""
    b = p.astype(np.int32).reshape(len(p), -1, 3)
    word = b[..., 0] | b[..., 1] << 8 | b[..., 2] << 16
    v = np.stack([(word >> s) & 63 for s in (0, 6, 12, 18)], -1)
    return (v - LEVELS - 1).astype(np.int8).reshape(len(p), -1)


def write_shard(data: Path, out: Path, resolution: int = 32, max_images: int = 0, seed: int = 0, tokens: bool = False,
                log=print) -> dict:
    """The training split at `resolution`; with max_images, a random subset of that many (seeded, in
    dataset order): what makes a 64px shard fit what a GPU machine can take (12,000 images: 42.7 MiB).
    `tokens`: token ids and the cut-down encoder instead of pooled embeddings (cross-attention networks)."""
    from safetensors.torch import save_file

    from designerbox.training import data as dataset
    from designerbox.training.train_diffusion import pooled_captions

    data, out = Path(data), Path(out)
    images, meta = dataset.load(data)
    keep = np.array([m["split"] == "train" for m in meta])
    text = pooled_captions(data, [m for m, k in zip(meta, keep) if k], log)  # the same cache as training
    train_rows = np.flatnonzero(keep)
    subset = np.arange(len(train_rows))
    if max_images and max_images < len(train_rows):
        subset = np.sort(np.random.default_rng(seed).choice(len(train_rows), max_images, replace=False))
    x = torch.from_numpy(images[train_rows[subset]]).permute(0, 3, 1, 2).float()  # (N, 3, S, S)
    if x.shape[-1] != resolution:
        x = F.interpolate(x, size=resolution, mode="area")
    small = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (N, R, R, 3)
    final, out = out, out.with_name(out.name + ".tmp")  # written aside, renamed into place when complete
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    per_file = max(1, MAX_FILE // (resolution * resolution * 3))  # uncompressed bound: always fits
    files = []
    for k, start in enumerate(range(0, len(small), per_file)):
        name = f"images-{k:03d}.npz"
        np.savez_compressed(out / name, images=small[start:start + per_file])
        files.append(name)
    captions = [meta[i]["captions"] for i in train_rows[subset]]
    table: dict[str, int] = {}
    index = torch.tensor([[table.setdefault(c, len(table)) for c in caps] for caps in captions], dtype=torch.int32)
    first = {}
    for i, caps in enumerate(captions):
        for v, c in enumerate(caps):
            first.setdefault(c, (i, v))
    rows = torch.tensor([first[c] for c in table])  # (U, 2): where each distinct caption first occurs
    extra = {}
    if tokens:
        extra = write_token_files(out, list(table), files)
    else:
        q, scale = quantize(text["pooled"][torch.from_numpy(subset)[rows[:, 0]], rows[:, 1]], LEVELS)
        packed = torch.from_numpy(pack6(q.numpy()))
        per_file = MAX_FILE // (packed.shape[1] + 4)
        for k, start in enumerate(range(0, len(packed), per_file)):
            name = f"text-{k:03d}.safetensors"
            save_file({"table_packed": packed[start:start + per_file].contiguous(),
                       "table_scale": scale[start:start + per_file].contiguous()}, str(out / name))
            files.append(name)
    save_file({"index": index.contiguous(), "empty": text["empty"]}, str(out / "text-index.safetensors"))
    files.append("text-index.safetensors")
    info = {"images": int(len(small)), "of_train_images": int(len(train_rows)), "subset_seed": seed if
            len(subset) < len(train_rows) else None, "resolution": resolution, "captions_per_image": int(index.shape[1]), "caption_bits": BITS,
            "distinct_captions": len(table), **extra,
            "files": files, "bytes": sum((out / f).stat().st_size for f in files),
            "source": json.loads((data / "stats.json").read_text())}
    (out / "shard.json").write_text(json.dumps(info, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    out.rename(final)
    return info


def write_token_files(out: Path, captions: list[str], files: list[str]) -> dict:
    """The distinct captions as token ids and the encoder cut down to them; returns shard.json's entries."""
    from safetensors.torch import save_file

    from designerbox.registry.text_encoders import load_minilm
    from designerbox.training.text_slice import encoder_config, slice_encoder

    encoder = load_minilm("cpu")
    ids = [e.ids for e in encoder.tokenizer.encode_batch(captions + [""])]
    flat = torch.tensor([i for seq in ids for i in seq], dtype=torch.int16)  # vocabulary 30,522 < 2**15
    offsets = torch.tensor([0] + [len(seq) for seq in ids]).cumsum(0).to(torch.int32)
    save_file({"ids": flat, "offsets": offsets}, str(out / "text-tokens.safetensors"))
    save_file(slice_encoder(encoder.bert, torch.unique(flat.long())), str(out / "encoder.safetensors"))
    files += ["text-tokens.safetensors", "encoder.safetensors"]
    return {"text": "tokens", "encoder": encoder_config(encoder.bert)}


def load_shard(folder: Path, tokens: bool = False, device: str | torch.device = "cpu", log=print):
    """(images uint8 (N, R, R, 3), pooled (N, V, 384) float32, empty (384,), token states or None).

    With `tokens`, the token states as train_diffusion.caption_tokens gives them, computed on `device`
    by the shard's cut-down encoder (a shard written with tokens=True)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    info = json.loads((folder / "shard.json").read_text())
    images = np.concatenate([np.load(folder / f)["images"] for f in info["files"] if f.endswith(".npz")])
    tok = None
    if info.get("text") == "tokens":
        from designerbox.pipelines.text_to_image import TOKENS
        from designerbox.training.text_slice import load_slice, pooled as pool, token_table

        text = load_file(str(folder / "text-index.safetensors"))
        t = load_file(str(folder / "text-tokens.safetensors"))
        off = t["offsets"].tolist()
        ids = [t["ids"][a:b].long().tolist() for a, b in zip(off[:-1], off[1:])]
        log(f"token states of {len(ids) - 1} distinct captions with the shard's encoder on {device} ...")
        bert = load_slice(load_file(str(folder / "encoder.safetensors")), info["encoder"], device)
        table, lengths = token_table(bert, ids, TOKENS)
        pooled = pool(table, lengths).cpu()[text["index"].long()]               # (N, V, 384)
        text["empty"] = pool(table[-1:], lengths[-1:])[0].cpu()
        if tokens:
            tok = {"table": table[:-1], "lengths": lengths[:-1], "index": text["index"],
                   "empty": table[-1], "empty_length": lengths[-1:]}
    elif tokens:
        raise ValueError(f"{folder} holds only pooled caption embeddings: a network with cross-attention needs "
                         "a shard written with token ids (designerbox data shard --tokens)")
    elif (folder / "text-index.safetensors").exists():
        text = load_file(str(folder / "text-index.safetensors"))
        parts = [load_file(str(folder / f)) for f in info["files"] if f.startswith("text-0")]
        q = torch.from_numpy(unpack6(torch.cat([t["table_packed"] for t in parts]).numpy()))
        table = q.float() * torch.cat([t["table_scale"] for t in parts])
        pooled = table[text["index"].long()]                                    # (N, V, 384)
    else:  # the first shard format: int8 (N, V, 384)
        text = load_file(str(folder / "text.safetensors"))
        pooled = text["pooled_q"].float() * text["pooled_scale"]
    pooled = F.normalize(pooled, dim=-1)  # undo the quantisation's small change of length
    if len(images) != len(pooled):
        raise ValueError(f"{folder}: {len(images)} images but {len(pooled)} caption embeddings")
    return images, pooled, text["empty"], tok
