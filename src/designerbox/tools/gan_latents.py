"""Latent tools for text-conditioned GANs: interpolation strips / GIFs and variations of one image.

Each tool takes a loaded (manifest, TextGAN), draws through pipelines.gan_generate and returns
the frames with a record of what made them (model id and sha256, prompts, seeds, truncation);
`encode_frames` makes one strip PNG (record in its metadata) or an animated GIF of them.
"""

from __future__ import annotations

import io
import json

from PIL import Image, PngImagePlugin

from designerbox.pipelines import gan_generate
from designerbox.pipelines.text_to_image import to_pil


class NotAGANError(ValueError):
    pass


def _check(manifest) -> None:
    if manifest.kind != "gan":
        raise NotAGANError(f"model {manifest.id!r} is a {manifest.kind} model; latent tools need a GAN "
                           "(see `designerbox models list --kind gan`)")


def _record(tool: str, manifest, model, **fields) -> dict:
    import torch

    from designerbox import __version__

    return {"tool": tool, "model": {"id": manifest.id, "family": manifest.family, "sha256": manifest.weights_sha256,
                                    "hash": manifest.short_hash},
            **fields, "native_size": list(manifest.native_size), "device": str(model.device),
            "versions": {"designerbox": __version__, "torch": torch.__version__}}


def _truncation(manifest, truncation: float | None) -> float:
    return truncation if truncation is not None else (manifest.truncation or 1.0)


def interpolation(manifest, model, prompts: tuple[str, str], seeds: tuple[int, int], frames: int = 8,
                  truncation: float | None = None) -> tuple[list[Image.Image], dict]:
    """Frames from (prompts[0], seeds[0]) to (prompts[1], seeds[1]), both ends included."""
    _check(manifest)
    if frames < 2:
        raise ValueError(f"frames must be at least 2 (the two ends), not {frames}")
    psi = _truncation(manifest, truncation)
    images = gan_generate.interpolate(model, prompts, seeds, frames, psi)
    return to_pil(images), _record("gan-interpolate", manifest, model, prompts=list(prompts), seeds=list(seeds),
                                   frames=frames, truncation=psi, interpolation="slerp (latent and caption embedding)")


def variations(manifest, model, prompt: str, seed: int, n: int = 8, strength: float = 0.3,
               truncation: float | None = None) -> tuple[list[Image.Image], dict]:
    """The image of (prompt, seed), then n variations around its latent (strength 0..1)."""
    _check(manifest)
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be between 0 (the same image) and 1 (unrelated images), not {strength}")
    psi = _truncation(manifest, truncation)
    images = gan_generate.variations(model, prompt, seed, n, strength, psi)
    return to_pil(images), _record("gan-variations", manifest, model, prompt=prompt, seed=seed, n=n,
                                   strength=strength, truncation=psi,
                                   noise_seeds=[(seed + 1 + i) % 2**32 for i in range(n)])


def strip(images: list[Image.Image]) -> Image.Image:
    """The images side by side, left to right."""
    w, h = images[0].size
    out = Image.new("RGB", (w * len(images), h), "white")
    for i, im in enumerate(images):
        out.paste(im, (i * w, 0))
    return out


def encode_frames(images: list[Image.Image], record: dict, fmt: str, scale: int = 1, ms_per_frame: int = 120,
                  record_key: str = "designerbox") -> bytes:
    """A strip PNG (fmt "png": the record in its `record_key` text chunk) or a looping GIF (fmt "gif":
    forwards then back, the record as its comment). `scale` enlarges each frame (nearest neighbour)."""
    if scale != 1:
        images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in images]
    buf = io.BytesIO()
    if fmt == "gif":
        loop = images + images[-2:0:-1]
        loop[0].save(buf, format="GIF", save_all=True, append_images=loop[1:], duration=ms_per_frame, loop=0,
                     comment=json.dumps(record, sort_keys=True).encode())
    elif fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt(record_key, json.dumps(record, sort_keys=True))
        strip(images).save(buf, format="PNG", pnginfo=info)
    else:
        raise ValueError(f"format {fmt!r}: valid formats are png (a strip) and gif (an animation)")
    return buf.getvalue()
