"""VAE tiling (pipelines/vae_tiling.py) on the tiny SD 1.x model: close to the untiled decode.

The tiny VAE's sample_size is 32 px, so its tiles are 16 latents with 4 overlapping, and a 96-px image
(48 latents) is decoded as 4 x 4 tiles. Its random weights see far beyond a tile (a real SD VAE's
tile is 64 latents), so this is a hard case: diffusers' own `enable_tiling()` (each tile normalised
with its own statistics) gives correlation 0.94 with the untiled image on these latents; ours, with
the picture's statistics in every GroupNorm, must be nearer.
"""

from __future__ import annotations

import json

import pytest
import torch

SIZE = 96


def _load(home, source, capsys, **kwargs):
    from designerbox.cli import main
    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    assert main(["models", "add", str(source), "--id", "tiny-folder", "--json"]) == 0
    capsys.readouterr()
    return load_stable_diffusion(Registry(home).get("tiny-folder"), "cpu", **kwargs)


def _sampled_latents(model, seeds):
    """The tiny model's own latents: the sampler's final estimate of a 96-px text to image."""
    from designerbox.pipelines.stable_diffusion import sd_text_to_image

    seen = []
    sd_text_to_image(model, "a photo of a cat", "blurry", width=SIZE, height=SIZE, steps=2, sampler="euler",
                     schedule="karras", cfg_scale=5.0, seeds=seeds, callback=lambda info: seen.append(info["denoised"]))
    return seen[-1]  # (B, 4, 48, 48)


def _corr(a, b):
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_tiled_decode_stays_close_to_the_untiled_one(tiny_sd, sd_home, capsys):
    from designerbox.pipelines.vae_tiling import PictureGroupNorm

    model = _load(sd_home, tiny_sd[0], capsys, vae_tiling="off")
    latents = _sampled_latents(model, [3, 4])
    plain = model.decode(latents)                                       # (2, 3, 96, 96) in [0, 1]
    model.vae_tiling = "on"
    tiled = model.decode(latents)
    assert tiled.shape == plain.shape == (2, 3, SIZE, SIZE)
    diff = (tiled - plain).abs() * 255
    assert diff.max() > 0.5                                             # the tiled path really ran
    assert diff.mean() < 8 and _corr(tiled, plain) > 0.95, (float(diff.mean()), _corr(tiled, plain))
    # nearer than tiles normalised on their own (diffusers' tiling of the same VAE, same tiles)
    vae = model.vae
    vae.enable_tiling()
    with torch.no_grad():
        theirs = ((vae.decode(latents / vae.config.scaling_factor).sample.float() + 1) / 2).clamp(0, 1)
    vae.disable_tiling()
    assert (theirs - plain).abs().mean() > (tiled - plain).abs().mean()
    # one image at a time: a batch decodes as its images alone; the VAE's own GroupNorms are back
    assert torch.allclose(model.decode(latents[1:]), tiled[1:], atol=1e-6)
    assert not any(isinstance(m, PictureGroupNorm) for m in vae.modules())
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in vae.decoder.modules()) == 14


def test_the_tiling_setting(tiny_sd, sd_home, tmp_path, capsys, monkeypatch):
    """auto tiles above 1536 x 1536 pixels (not at SD's or SDXL's native sizes); DESIGNERBOX_VAE_TILING
    sets it, the record says whether an image was tiled, and a wrong value names the choices."""
    from designerbox.cli import main

    model = _load(sd_home, tiny_sd[0], capsys)
    assert model.vae_tiling == "auto"
    assert not model.uses_vae_tiling(1024, 1024) and not model.uses_vae_tiling(1536, 1536)
    assert model.uses_vae_tiling(1536, 1544) and model.uses_vae_tiling(2048, 2048)
    args = ["generate", "a cat", "--model", "tiny-folder", "--steps", "1", "--size", "64x64", "--seed", "1",
            "-o", str(tmp_path), "--json", "--no-gallery"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)[0]["record"]["vae_tiling"] is False
    monkeypatch.setenv("DESIGNERBOX_VAE_TILING", "on")
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)[0]["record"]["vae_tiling"] is True
    monkeypatch.setenv("DESIGNERBOX_VAE_TILING", "sometimes")
    assert main(args) != 0
    assert "DESIGNERBOX_VAE_TILING must be one of auto, on, off, not 'sometimes'" in capsys.readouterr().err
    from designerbox.pipelines.stable_diffusion import vae_tiling_mode

    with pytest.raises(ValueError, match="auto, on, off"):
        vae_tiling_mode("yes")
