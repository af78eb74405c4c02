"""The DesignerBox evaluator: a small image encoder into the MiniLM sentence-embedding space.

No Inception or CLIP weights exist offline, so DesignerBox trains its own image tower the way
CLIP does (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision", symmetric InfoNCE with a learnable temperature), but against a *locked* text tower:
the frozen all-MiniLM-L6-v2 pooled caption embeddings (the locked-tower idea of LiT, Zhai et al.
2022, with the roles swapped). An image and its caption then meet as unit vectors in one 384-d
space, which gives prompt adherence (retrieval), a feature space for a Frechet distance and a
similarity for near-copy checks (see training/evaluate.py).

    image (B, 3, H, W) in [0, 1], any size -> resize to image_size -> stem -> stages -> pool -> proj -> unit (B, 384)

The network is a small ResNet (He et al. 2016) with GroupNorm (Wu & He 2018) and SiLU; every
stage after the first halves the resolution with a strided 3x3 conv.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    """Pre-activation residual block: GN -> SiLU -> conv3x3, twice, plus the input."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class EvalEncoder(nn.Module):
    """Image -> 384-d unit vector in the all-MiniLM-L6-v2 sentence space; config = these keyword arguments.

    image_size     side every input is resized to first (antialiased bilinear, up or down; a
                   non-square input is stretched to a square), so 32x32 drawings, 64x64 dataset
                   images and 256x256 upscaled outputs all go through the same network
    channels       widths of the stages; the stem halves the resolution, each later stage halves it again
    blocks         residual blocks per stage
    embed_dim      output size: 384, the size of the MiniLM pooled embedding it is trained against
    groups         GroupNorm groups (divides every width)
    init_temperature  CLIP's starting softmax temperature (logit_scale = log(1 / T)); learned in training
    """

    def __init__(self, image_size: int = 32, channels: tuple[int, ...] = (48, 96, 192), blocks: int = 2,
                 embed_dim: int = 384, groups: int = 8, init_temperature: float = 0.07):
        super().__init__()
        channels = tuple(channels)
        if image_size < 2 ** len(channels) or not channels or blocks < 1 or any(c % groups for c in channels):
            raise ValueError(f"EvalEncoder needs image_size >= 2**len(channels), blocks >= 1 and widths divisible by "
                             f"groups; got image_size={image_size}, channels={channels}, blocks={blocks}, groups={groups}")
        self.image_size = image_size
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0] // 2, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(channels[0] // 2, channels[0], 3, stride=2, padding=1))
        self.stages = nn.ModuleList()
        for i, c in enumerate(channels):
            down = [] if i == 0 else [nn.GroupNorm(groups, channels[i - 1]), nn.SiLU(),
                                      nn.Conv2d(channels[i - 1], c, 3, stride=2, padding=1)]
            self.stages.append(nn.Sequential(*down, *(ResBlock(c, groups) for _ in range(blocks))))
        self.norm_out = nn.GroupNorm(groups, channels[-1])
        self.proj = nn.Linear(channels[-1], embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)))

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, S, S), S = image_size; unchanged when already that size."""
        if images.shape[-2:] == (self.image_size, self.image_size):
            return images
        return F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                             antialias=True, align_corners=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1], RGB on white -> unit vectors (B, embed_dim)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"EvalEncoder takes (B, 3, H, W) RGB images in [0, 1], got shape {tuple(images.shape)}")
        x = self.resize(images.float()) * 2 - 1           # (B, 3, S, S) in [-1, 1]
        h = self.stem(x)                                  # (B, C0, S/2, S/2)
        for stage in self.stages:
            h = stage(h)                                  # (B, Ci, S/2^(i+1), S/2^(i+1))
        h = F.silu(self.norm_out(h)).mean(dim=(2, 3))     # (B, C_last) global average pool
        return F.normalize(self.proj(h), dim=-1)          # (B, embed_dim) unit vectors
