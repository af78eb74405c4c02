"""The one sampling loop behind every diffusion model's text to image, image to image and inpainting.

A model (PixelDiffusion, LatentDiffusion, LatentDiffusionXL, StableDiffusion3, Flux) supplies what
differs between families:

    conditions(prompt, negative, batch, width, height) -> (cond, uncond)   what the denoiser is given
    latent_shape(width, height) -> (C, h, w)                                the space sampling runs in
    encode_images(images in [0, 1]) -> x0 in that space                     (VAE encoder, or 2x - 1)
    decode(x) -> images in [0, 1] on the CPU
    denoiser() -> D(x, sigma, **cond)                                      (FLUX: denoiser(width, height))
    guidance_embedded (optional)                                           cfg_scale is a network input (FLUX dev)

Text to image starts from noise at sigma_max and runs the whole schedule. Image to image (SDEdit,
Meng et al. 2022; A1111's "denoising strength") runs the last round(strength * steps) steps of the same
schedule from the encoded image plus noise at that level. Inpainting adds a mask (1 = repaint): the
denoiser's estimate is replaced by the encoded image outside it at every step (MaskedDenoiser), and
the decoded result is composited onto the original pixels, so what is outside the mask is unchanged.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from designerbox.samplers import CFGDenoiser, MaskedDenoiser, get_sampler, make_sigmas


def initial_noise(seeds: list[int], shape: tuple[int, int, int]) -> torch.Tensor:
    """Unit Gaussian noise, one CPU generator per image (seed, seed+1, ...), so every image of a
    batch has the noise it would have alone, on any device."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])


def steps_for_strength(steps: int, strength: float) -> int:
    """How many of the schedule's steps image to image runs (at least one)."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    return max(1, min(steps, round(steps * strength)))


@torch.no_grad()
def draw(model, prompt: str, negative_prompt: str | None, *, width: int, height: int, steps: int, sampler: str,
         schedule: str, cfg_scale: float, seeds: list[int], callback: Callable[[dict], None] | None = None,
         init_images: torch.Tensor | None = None, strength: float = 1.0,
         mask: torch.Tensor | None = None, conditions: tuple[dict, dict] | None = None,
         generators: list[tuple[torch.Generator, int]] | None = None) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] on the CPU, B = len(seeds).

    init_images  (1 or B, 3, H, W) in [0, 1]: image to image from these
    strength     share of the schedule run from init_images (1: all of it, from noise at sigma_max)
    mask         (1 or B, 1, H, W) in [0, 1], 1 = repaint: inpainting (needs init_images)
    conditions   (cond, uncond) made already, B rows each (several requests in one batch, see
                 stack_conditions); prompt and negative_prompt are then not used
    generators   [(generator, rows)] for the ancestral samplers' fresh noise, one per group of rows
                 (default: one generator seeded by seeds[0] for the whole batch)
    """
    if mask is not None and init_images is None:
        raise ValueError("inpainting needs the image the mask belongs to (init_images)")
    batch = len(seeds)
    # 1. the conditions of both branches of classifier-free guidance
    cond, uncond = conditions or model.conditions(prompt, negative_prompt, batch, width, height)
    # 2. network -> denoiser D(x, sigma); FLUX's noise levels shift with the image size
    denoiser = model.denoiser(width, height) if getattr(model, "shift_by_size", False) else model.denoiser()
    if getattr(model, "guidance_embedded", False):  # FLUX dev: the guidance scale is an input, one pass a step
        guidance = torch.full((batch,), float(cfg_scale), device=model.device)
        cond, uncond, cfg_scale = dict(cond, guidance=guidance), dict(uncond, guidance=guidance), 1.0
    # 3. the noise levels; image to image runs the tail of the schedule
    sigmas = make_sigmas(schedule, steps, denoiser).to(model.device)
    shape = model.latent_shape(width, height)
    # 4. the starting point: noise at sigma_max, or the encoded image plus noise at the first level run
    noise = initial_noise(seeds, shape).to(model.device)
    x0 = None
    if init_images is None:
        x = noise * sigmas[0]
    else:
        sigmas = sigmas[steps - steps_for_strength(steps, strength):]
        x0 = model.encode_images(init_images.to(model.device)).float().expand(batch, -1, -1, -1)  # (B, C, h, w)
        x = x0 + noise * sigmas[0]
    guided = CFGDenoiser(denoiser, cfg_scale)
    if mask is not None:
        cells = F.adaptive_max_pool2d(mask.float(), shape[1:]).to(model.device).expand(batch, -1, -1, -1)
        guided = MaskedDenoiser(guided, x0, cells)  # any repainted pixel makes its latent cell repainted
    # 5. sample; ancestral samplers draw their extra noise from a generator seeded by seeds[0]
    generator = generators or torch.Generator().manual_seed(seeds[0])
    x = get_sampler(sampler)(guided, x, sigmas, extra_args={"cond": cond, "uncond": uncond},
                             callback=callback, generator=generator)
    # 6. back to pixels; an inpainted image keeps the original pixels outside the mask
    images = model.decode(x)
    if mask is not None:
        m = mask.float().cpu()
        images = m * images + (1 - m) * init_images.float().cpu()
    return images


def stack_conditions(parts: list[tuple[dict, dict]]) -> tuple[dict, dict]:
    """The (cond, uncond) of several requests as one batch: tensors concatenated along dim 0, other
    values equal in all (ValueError naming the key otherwise, or when shapes past dim 0 differ)."""
    stacked = []
    for branch in (0, 1):
        dicts = [p[branch] for p in parts]
        out = {}
        for key in dicts[0]:
            values = [d[key] for d in dicts]
            if isinstance(values[0], torch.Tensor):
                if len({tuple(v.shape[1:]) for v in values}) != 1:
                    raise ValueError(f"condition {key!r} has shapes {[tuple(v.shape) for v in values]}: not stackable")
                out[key] = torch.cat(values)
            elif all(v == values[0] for v in values):
                out[key] = values[0]
            else:
                raise ValueError(f"condition {key!r} differs between the requests: not stackable")
        stacked.append(out)
    return stacked[0], stacked[1]
