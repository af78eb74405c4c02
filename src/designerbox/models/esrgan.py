"""The Residual Dense Network that UpscalerJS ships as `esrgan-slim` and `esrgan-medium` (x2, x3, x4, x8).

Zhang et al. 2018, "Residual Dense Network for Image Super-Resolution" (arXiv:1802.08797), in the
Keras form of idealo's image-super-resolution (ISR; the shipped model.json uses its layer names),
trained on DIV2K. Despite the package names these are RDNs, not ESRGAN's RRDB generator:

    LR -> F_m1 -> F_0 -> D x RDB -> concat -> GFF_1 (1x1) -> GFF_2 -> + F_m1 -> UPN1..3 -> upsample -> SR

Each residual dense block (RDB, eq. 3-7 of the paper) grows C conv+ReLU layers of G channels on a
running concatenation, fuses them back to G0 channels with a 1x1 conv (LFF) and adds its input.
Attribute names follow the Keras layer names (`F_m1`, `GFF_2`, `SR`; `F_3_1` is `rdbs[2].convs[0]`,
`LFF_3` is `rdbs[2].LFF`), so converting TF.js weights is a renaming plus a transpose. Pixels in and out are
RGB in 0..255, not clipped here (the pipeline clips and rounds).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualDenseBlock(nn.Module):
    """C densely connected conv+ReLU layers, local feature fusion (1x1 conv), local residual."""

    def __init__(self, C: int, G: int, G0: int, kernel_size: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(G0 + c * G, G, kernel_size, padding=kernel_size // 2) for c in range(C))
        self.LFF = nn.Conv2d(G0 + C * G, G0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, G0, H, W)
        h = x
        for conv in self.convs:
            h = torch.cat([h, F.relu(conv(h))], dim=1)  # (B, G0 + c*G, H, W): RDB_Concat_d_c
        return self.LFF(h) + x  # LRL_d


class RDN(nn.Module):
    """Residual Dense Network with idealo's upsampling net; config = these keyword arguments.

    scale        upscaling factor (2, 3, 4, 8)
    C            conv layers per residual dense block
    D            residual dense blocks
    G            channels each conv layer of a block adds (growth rate)
    G0           feature channels between blocks
    kernel_size  of the 3x3-style convs (the 1x1 fusions stay 1x1, UPN1 stays 5x5 as in ISR)
    channels     image channels in and out (3: RGB)

    Upsampling is ISR's "ups" variant, the one these weights use: UPN3 makes channels*scale^2 maps,
    nearest-neighbour upsampling by scale, then the SR conv.
    """

    def __init__(self, scale: int = 4, C: int = 1, D: int = 10, G: int = 64, G0: int = 64, kernel_size: int = 3,
                 channels: int = 3):
        super().__init__()
        if scale < 1 or min(C, D, G, G0, kernel_size, channels) < 1 or kernel_size % 2 == 0:
            raise ValueError("RDN needs scale, C, D, G, G0, channels >= 1 and an odd kernel_size")
        self.scale = scale
        # input pixels on each side that one output pixel depends on (3x3-style convs: F_m1, F_0, the
        # D*C block convs, GFF_2; UPN1..3 add 2 + 1 + 1; SR works at the upscaled size): tiles cut with
        # this much context give the same pixels as the whole image
        self.receptive_radius = (3 + D * C) * (kernel_size // 2) + 4 + -(-(kernel_size // 2) // scale)
        pad = kernel_size // 2
        self.F_m1 = nn.Conv2d(channels, G0, kernel_size, padding=pad)
        self.F_0 = nn.Conv2d(G0, G0, kernel_size, padding=pad)
        self.rdbs = nn.ModuleList(ResidualDenseBlock(C, G, G0, kernel_size) for _ in range(D))
        self.GFF_1 = nn.Conv2d(D * G0, G0, 1)
        self.GFF_2 = nn.Conv2d(G0, G0, kernel_size, padding=pad)
        self.UPN1 = nn.Conv2d(G0, 64, 5, padding=2)
        self.UPN2 = nn.Conv2d(64, 32, 3, padding=1)
        self.UPN3 = nn.Conv2d(32, channels * scale**2, 3, padding=1)
        self.SR = nn.Conv2d(channels * scale**2, channels, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) in 0..255
        f_m1 = self.F_m1(x)  # (B, G0, H, W)
        h = self.F_0(f_m1)
        local = []
        for rdb in self.rdbs:
            h = rdb(h)
            local.append(h)
        h = self.GFF_2(self.GFF_1(torch.cat(local, dim=1)))  # global feature fusion: (B, D*G0, H, W) -> (B, G0, H, W)
        h = h + f_m1  # global residual learning (FDF)
        h = F.relu(self.UPN1(h))
        h = F.relu(self.UPN2(h))
        h = self.UPN3(h)  # (B, 3*s^2, H, W)
        h = F.interpolate(h, scale_factor=self.scale, mode="nearest")  # (B, 3*s^2, sH, sW): UPsample
        return self.SR(h)  # (B, 3, sH, sW)

