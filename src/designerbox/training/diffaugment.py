"""Differentiable augmentation for GAN training (DiffAugment: Zhao et al. 2020, "Differentiable
Augmentation for Data-Efficient GAN Training", Sec. 3 and their reference code), in plain torch.

The same random transforms are applied to real and generated images wherever the discriminator
sees them (its own update and the generator's), so the discriminator cannot memorise the small
training set and the generator still learns the un-augmented distribution: every op is
differentiable in x.

    color        brightness +U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5)
    translation  integer shifts of up to 1/8 of the side, zero padded
    cutout       one zeroed square of half the side at a random centre
Images are (B, C, H, W) in [-1, 1]; all randomness comes from the `generator` argument.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def _rand(x: torch.Tensor, generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(len(x), *shape, generator=generator, device=x.device, dtype=x.dtype)


def color(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    x = x + (_rand(x, generator, 1, 1, 1) - 0.5)                                          # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(x, generator, 1, 1, 1) * 2) + mean                            # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x, generator, 1, 1, 1) + 0.5) + mean                       # contrast


def translation(x: torch.Tensor, generator: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (b, 1, 1), generator=generator, device=x.device)
    tx = torch.randint(-sw, sw + 1, (b, 1, 1), generator=generator, device=x.device)
    gb, gy, gx = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")       # (B, H, W) each
    gy = (gy + ty + 1).clamp(0, h + 1)
    gx = (gx + tx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)                                 # (B, H+2, W+2, C)
    return padded[gb, gy, gx].permute(0, 3, 1, 2).contiguous()                           # (B, C, H, W)


def cutout(x: torch.Tensor, generator: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=generator, device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=generator, device=x.device)
    gb, gy, gx = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(ch, device=x.device),
                                torch.arange(cw, device=x.device), indexing="ij")      # (B, ch, cw) each
    gy = (gy + oy - ch // 2).clamp(0, h - 1)
    gx = (gx + ox - cw // 2).clamp(0, w - 1)
    mask = torch.ones(b, h, w, device=x.device, dtype=x.dtype)
    mask[gb, gy, gx] = 0
    return x * mask[:, None]


def diff_augment(x: torch.Tensor, policy: str, generator: torch.Generator) -> torch.Tensor:
    """Apply the comma-separated ops of `policy` (e.g. "color,translation,cutout"; "" for none)."""
    ops = {"color": color, "translation": translation, "cutout": cutout}
    for name in filter(None, policy.split(",")):
        if name not in ops:
            raise ValueError(f"unknown augmentation {name!r}; valid: {', '.join(POLICIES)}")
        x = ops[name](x, generator)
    return x
