"""Speed-ups for a latent diffusion model's networks, each one switchable and checked against the plain path.

    speed_up(model, channels_last=True, fuse_qkv=True, compile="reduce-overhead")

What each does (measured one at a time by bench/gpu_sd.py on the H100; tests/test_speed.py holds every
output within tolerance of the unoptimised path on tiny models on the CPU):

  channels_last  convolution weights and activations in NHWC, the layout tensor cores read without
                 transposes (cuDNN picks its NHWC kernels).
  fuse_qkv       one matrix product for query, key and value in self-attention (key and value in
                 cross-attention) instead of three: fewer, larger GEMMs (diffusers' fuse_projections).
  compile        torch.compile of the UNet: inductor fuses the pointwise work (GroupNorm + SiLU, bias
                 adds, residuals) into Triton kernels. "reduce-overhead" also records CUDA graphs, so
                 one UNet call is one graph launch instead of about a thousand kernel launches: what
                 bounds a batch-1 step on a fast GPU. "max-autotune-no-cudagraphs" tunes GEMM tiles
                 instead. The compiled kernels are cached on disk (TORCHINDUCTOR_CACHE_DIR, by default
                 $DESIGNERBOX_HOME/cache/inductor), so a restarted worker warms up from the cache.

The first call after compile is slow (the warm-up: tracing and kernel generation, seconds to minutes);
each new batch size or image size compiles again. The server's worker therefore compiles once per
(model, size) and hands compatible jobs to the network together.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

COMPILE_MODES = ("reduce-overhead", "max-autotune-no-cudagraphs", "default")


def inductor_cache_dir() -> Path:
    """Where compiled kernels are kept between processes (set before the first compile)."""
    from designerbox.settings import Settings

    folder = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or Settings.from_env().home / "cache" / "inductor")
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return folder


def speed_up(model, *, channels_last: bool = True, fuse_qkv: bool = True, compile: str | None = None) -> dict:
    """Apply the chosen speed-ups in place to `model` (anything with .unet and .vae, e.g. LatentDiffusion)
    and return what was applied. Safe to call on the CPU (channels_last and fuse_qkv work there too)."""
    if compile is not None and compile not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)} or None, got {compile!r}")
    applied = {"channels_last": False, "fuse_qkv": False, "compile": None}
    if channels_last:
        model.unet.to(memory_format=torch.channels_last)
        model.vae.to(memory_format=torch.channels_last)
        applied["channels_last"] = True
    if fuse_qkv and hasattr(model.unet, "fuse_qkv_projections"):
        try:
            model.unet.fuse_qkv_projections()
            model.vae.fuse_qkv_projections()
            applied["fuse_qkv"] = True
        except ValueError as err:  # added-KV attention (some SD variants): keep the separate projections
            applied["fuse_qkv"] = f"not applied: {err}"
    if compile is not None:
        inductor_cache_dir()
        import torch._inductor.config as inductor

        inductor.conv_1x1_as_mm = True          # 1x1 convolutions (attention in/out projections) as GEMMs
        inductor.epilogue_fusion = False
        model.unet = torch.compile(model.unet, mode=compile, fullgraph=False, dynamic=False)
        applied["compile"] = compile
    return applied
