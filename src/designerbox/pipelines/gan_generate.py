"""Text to image with a text-conditioned GAN: one generator call per batch, no sampler.

    prompt --MiniLM--> text (384)    seed --N(0, I)--> z    (z, text) --mapping--> w --truncation--> synthesis --> image

Truncation is StyleGAN's trick in W (Karras et al. 2019, Sec. 3 and App. B), made conditional:
w' = w_avg(text) + psi (w - w_avg(text)), where w_avg(text) is the mean style of the caption over
a fixed set of probe latents (so it depends on the caption only, never on the seed). psi = 1
leaves w as drawn; smaller psi trades variety for typical, cleaner images.

Latent tools for the same networks: interpolation between two (seed, prompt) ends (slerp in z,
slerp of the unit caption embeddings) and variations (small spherical moves around one z).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

N_PROBE = 256  # probe latents for a caption's mean style (the truncation centre)


@dataclass
class TextGAN:
    """Everything a text-conditioned GAN needs, built by the registry's loader.

    generator     models.gan.Generator, eval mode
    text_encoder  MiniLMTextEncoder: prompts -> (token states, pooled embedding)
    """

    generator: nn.Module
    text_encoder: nn.Module
    device: torch.device
    dtype: torch.dtype = torch.float32

    @property
    def resolution(self) -> int:
        return self.generator.resolution


def latents(seeds: list[int], z_dim: int) -> torch.Tensor:
    """z ~ N(0, I), one CPU generator per image (seed, seed+1, ...): an image of a batch has the
    latent it would have alone, on any device. (B, z_dim)"""
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of rows of a and b (Shoemake 1985) at fractions t (B,); lerp when parallel."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1).clamp(-1, 1))[:, None]          # (B, 1)
    t = t[:, None]
    so = torch.sin(omega)
    mixed = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / so.clamp(min=1e-6)
    return torch.where(so < 1e-6, (1 - t) * a + t * b, mixed)


def encode(model: TextGAN, prompts: list[str]) -> torch.Tensor:
    """The pooled, unit-length MiniLM embeddings of prompts: (B, 384) on the model's device."""
    return model.text_encoder(prompts)[1].to(model.device, model.dtype)


@torch.no_grad()
def draw(model: TextGAN, z: torch.Tensor, text: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
    """Images (B, 3, R, R) in [0, 1] on the CPU from latents (B, z_dim) and caption embeddings (B, 384)."""
    g = model.generator
    z, text = z.to(model.device, model.dtype), text.to(model.device, model.dtype)
    # 1. the style of each image
    w = g.style(z, text)                                                     # (B, w_dim)
    # 2. truncation towards each caption's mean style
    if truncation != 1.0:
        captions, which = torch.unique(text, dim=0, return_inverse=True)   # the distinct captions
        probe = latents([0], N_PROBE * g.z_dim).view(N_PROBE, g.z_dim).to(model.device, model.dtype)
        w_avg = torch.stack([g.style(probe, c.expand(N_PROBE, -1)).mean(0) for c in captions])  # (C, w_dim)
        w = w_avg[which] + truncation * (w - w_avg[which])
    # 3. synthesis, then from [-1, 1] to [0, 1]
    x = g.synthesis(w)
    return ((x.float().cpu() + 1) / 2).clamp(0, 1)


def gan_text_to_image(model: TextGAN, prompt: str, *, seeds: list[int], truncation: float = 1.0) -> torch.Tensor:
    """Returns images (B, 3, R, R) in [0, 1] on the CPU, B = len(seeds)."""
    text = encode(model, [prompt])                                          # (1, 384)
    z = latents(seeds, model.generator.z_dim)                               # (B, z_dim)
    return draw(model, z, text.expand(len(seeds), -1), truncation)


def interpolate(model: TextGAN, prompts: tuple[str, str], seeds: tuple[int, int], frames: int,
                truncation: float = 1.0) -> torch.Tensor:
    """`frames` images from (prompts[0], seeds[0]) to (prompts[1], seeds[1]), ends included. (F, 3, R, R)"""
    t = torch.linspace(0, 1, frames)
    z0, z1 = latents(list(seeds), model.generator.z_dim)
    text = encode(model, list(prompts)).float().cpu()                      # (2, 384)
    z = slerp(z0.expand(frames, -1), z1.expand(frames, -1), t)
    c = slerp(text[:1].expand(frames, -1), text[1:].expand(frames, -1), t)
    return draw(model, z, c / c.norm(dim=-1, keepdim=True), truncation)


def variations(model: TextGAN, prompt: str, seed: int, n: int, strength: float = 0.3,
               truncation: float = 1.0) -> torch.Tensor:
    """The image of (prompt, seed) followed by n variations: z_i = cos(a) z + sin(a) n_i, a = strength * pi/2,
    n_i the latents of seeds seed+1.., so z_i stays N(0, I) (strength 0: the same image, 1: unrelated). (1+n, 3, R, R)"""
    z_dim = model.generator.z_dim
    z = latents([seed], z_dim)                                              # (1, z_dim)
    noise = latents([(seed + 1 + i) % 2**32 for i in range(n)], z_dim)     # (n, z_dim)
    a = strength * math.pi / 2
    zs = torch.cat([z, math.cos(a) * z + math.sin(a) * noise])
    text = encode(model, [prompt])
    return draw(model, zs, text.expand(len(zs), -1), truncation)
