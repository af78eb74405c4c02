"""Decoding large latents in tiles, so the VAE's memory is that of one tile, with one colour balance.

A KL autoencoder's decoder is convolutions (local) and GroupNorms (global: each normalises a group of
channels by its mean and variance over the whole picture). Decoding tiles on their own, as diffusers'
`enable_tiling()` does, normalises each tile by its own statistics: tiles of a sky and of a face get
different brightness, and on our tiny random-weight test VAE the result is barely related to the
untiled image (correlation 0.55 on a smooth picture). Here each GroupNorm gets the picture's statistics
instead, gathered from the tiles themselves:

  1. `passes` times: decode every tile, each GroupNorm normalising with the statistics gathered so far
     (the first time: the tile's own), while its input's sum and sum of squares per group are added
     up over all tiles: the whole picture's mean and variance per group and layer
  2. decode every tile with those statistics frozen, and blend the overlapping tiles with weights
     that fall off linearly towards each tile's edges (the overlap hides the convolutions' borders)

The GroupNorms are wrapped by PictureGroupNorm for the decode and put back after. With the exact
statistics the only tile-local parts left are the convolutions near tile edges and the mid-block
attention; a tiled decode is close to the untiled one, not equal (tests/test_vae_tiling.py).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class PictureGroupNorm(nn.Module):
    """A GroupNorm that normalises with given statistics, mean and var (B, G) (None: its input's own),
    and adds its input's per-group sum, sum of squares and count to `totals`."""

    def __init__(self, norm: nn.GroupNorm, stats: tuple[torch.Tensor, torch.Tensor] | None, totals: list | None):
        super().__init__()
        self.norm, self.stats, self.totals = norm, stats, totals

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        xg = x.float().reshape(b, self.norm.num_groups, -1)                              # (B, G, C/G * h * w)
        if self.totals is not None:
            self.totals[0] += xg.sum(-1)
            self.totals[1] += xg.square().sum(-1)
            self.totals[2] += xg.shape[-1]
        mean, var = self.stats if self.stats is not None else (xg.mean(-1), xg.var(-1, unbiased=False))
        xg = (xg - mean[..., None]) * torch.rsqrt(var[..., None] + self.norm.eps)
        x_hat = xg.reshape(x.shape).to(x.dtype)
        if self.norm.affine:  # (B, C, h, w), or (B, C, N) in the attention block
            shape = (1, c) + (1,) * (x.dim() - 2)
            x_hat = x_hat * self.norm.weight.reshape(shape) + self.norm.bias.reshape(shape)
        return x_hat


def _group_norms(module: nn.Module) -> list[tuple[nn.Module, str, nn.GroupNorm]]:
    """(parent, attribute, GroupNorm) for every GroupNorm under `module`."""
    return [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
            if isinstance(child, nn.GroupNorm)]


@contextlib.contextmanager
def picture_group_norms(decoder: nn.Module, stats: dict | None, totals: dict | None):
    """The decoder's GroupNorms wrapped by PictureGroupNorm (stats and totals per GroupNorm), put back on leaving."""
    found = _group_norms(decoder)
    try:
        for parent, name, norm in found:
            setattr(parent, name, PictureGroupNorm(norm, stats[norm] if stats else None,
                                                   totals[norm] if totals is not None else None))
        yield
    finally:
        for parent, name, norm in found:
            setattr(parent, name, norm)


def _starts(size: int, tile: int, stride: int) -> list[int]:
    """Tile origins along one side: every `stride`, the last one flush with the end."""
    if size <= tile:
        return [0]
    return list(range(0, size - tile, stride)) + [size - tile]


def _ramp(length: int, overlap: int, device) -> torch.Tensor:
    """Blending weights along one side of a tile: rising over `overlap` pixels at both ends, (length,)."""
    i = torch.arange(length, device=device, dtype=torch.float32)
    return (torch.minimum(i + 1, length - i) / max(overlap, 1)).clamp(max=1.0)


@torch.no_grad()
def decode_tiled(vae, z: torch.Tensor, tile: int, overlap: int, passes: int = 1) -> torch.Tensor:
    """Latents z (1, C, h, w), unscaled, -> decoded pixels (1, 3, h*f, w*f), in tiles of tile x tile
    latents overlapping by `overlap` latents (steps 1-2 of the module docstring)."""
    h, w = z.shape[-2:]
    f = 2 ** (len(vae.config.block_out_channels) - 1)
    tiles = [(y, x) for y in _starts(h, tile, tile - overlap) for x in _starts(w, tile, tile - overlap)]
    norms = [norm for _, _, norm in _group_norms(vae.decoder)]
    stats = None
    for _ in range(passes):  # 1. the picture's statistics, from the tiles
        totals = {n: [torch.zeros(1, n.num_groups, device=z.device), torch.zeros(1, n.num_groups, device=z.device), 0]
                  for n in norms}
        with picture_group_norms(vae.decoder, stats, totals):
            for y, x in tiles:
                vae.decode(z[..., y:y + tile, x:x + tile])
        stats = {}
        for n, (total, squares, count) in totals.items():
            mean = total / count
            stats[n] = (mean, (squares / count - mean.square()).clamp(min=0))
    out = torch.zeros(1, vae.config.out_channels, h * f, w * f, device=z.device)
    weight = torch.zeros(1, 1, h * f, w * f, device=z.device)
    with picture_group_norms(vae.decoder, stats, None):  # 2. the tiles with those statistics, blended
        for y, x in tiles:
            piece = vae.decode(z[..., y:y + tile, x:x + tile]).sample.float()         # (1, 3, th*f, tw*f)
            ph, pw = piece.shape[-2:]
            ramp = _ramp(ph, overlap * f, z.device)[:, None] * _ramp(pw, overlap * f, z.device)[None, :]
            out[..., y * f:y * f + ph, x * f:x * f + pw] += piece * ramp
            weight[..., y * f:y * f + ph, x * f:x * f + pw] += ramp
    return out / weight
