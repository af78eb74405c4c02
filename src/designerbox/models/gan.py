"""A small text-conditioned GAN: a generator and a projection discriminator (networks only).

    text (B, 384) --Linear--> c (B, w_dim)
    z (B, z_dim) ~ N(0, 1), [z, c] --MLP--> w (B, w_dim)      # one style vector per image
    w --Linear--> (B, C0, 4, 4) --[up x2, conv3x3, AdaIN(w), lrelu] x n--> (B, C_n, R, R)
    every resolution adds its toRGB (1x1 conv) to the upsampled sum: the "skip" generator of
    StyleGAN2 (Karras et al. 2020, Fig. 7), which learns coarse colour and layout first.

AdaIN (Huang & Belongie 2017; StyleGAN, Karras et al. 2019): instance-normalise, then scale and
shift each channel by an affine map of w. The condition reaches every layer through w.

The discriminator is a residual convolutional encoder phi(x) -> (B, F) with the projection head
of Miyato & Koyama 2018 ("cGANs with Projection Discriminator", eq. 3):
    D(x, y) = psi(phi(x)) + <embed(y), phi(x)>
so the same image features score an image against any caption: matching-aware negatives (a real
image with another image's caption, Reed et al. 2016) cost one dot product.

Config = constructor keyword arguments (saved as config.json); no I/O and no sampling here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def init_weights(net: nn.Module) -> None:
    """He initialisation for leaky-ReLU layers (He et al. 2015), zero biases; AdaIN maps start at identity.

    PyTorch's default (kaiming-uniform with a=sqrt(5)) shrinks the signal by ~sqrt(3) per layer: an
    un-normalised ten-layer discriminator then starts blind to its input and stays so for hundreds
    of steps."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in net.modules():
        if isinstance(m, AdaIN):
            nn.init.zeros_(m.affine.weight)
            nn.init.zeros_(m.affine.bias)


class AdaIN(nn.Module):
    """x -> instance_norm(x) * (1 + gamma(w)) + beta(w), per channel."""

    def __init__(self, channels: int, w_dim: int):
        super().__init__()
        self.affine = nn.Linear(w_dim, 2 * channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # (B, C, H, W), (B, w_dim)
        gamma, beta = self.affine(w)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        return F.instance_norm(x) * (1 + gamma) + beta


class GenBlock(nn.Module):
    """Nearest x2 upsampling (none for the first block), then `convs` x (conv3x3 -> AdaIN -> lrelu)."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, convs: int, up: bool):
        super().__init__()
        self.up = up
        self.convs = nn.ModuleList(nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1) for i in range(convs))
        self.norms = nn.ModuleList(AdaIN(c_out, w_dim) for _ in range(convs))
        self.to_rgb = nn.Conv2d(c_out, 3, 1)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")  # (B, C_in, 2H, 2W)
        for conv, norm in zip(self.convs, self.norms):
            x = F.leaky_relu(norm(conv(x), w), 0.2)
        return x, self.to_rgb(x)  # features (B, C_out, H, W), rgb (B, 3, H, W)


class Generator(nn.Module):
    """(z, text) -> image (B, 3, R, R) in about [-1, 1]; R = 4 * 2 ** (len(channels) - 1).

    z_dim      latent size (z ~ N(0, I); truncation scales it towards 0)
    text_dim   caption embedding size (384: the pooled all-MiniLM-L6-v2 embedding)
    w_dim      style vector size
    channels   feature channels at 4x4, 8x8, ... (the last one at the output resolution)
    convs      conv layers per resolution: one int, or one per resolution
    """

    def __init__(self, z_dim: int = 128, text_dim: int = 384, w_dim: int = 256,
                 channels: tuple[int, ...] = (256, 128, 64, 32, 16), convs: int | tuple[int, ...] = 1):
        super().__init__()
        convs = (convs,) * len(channels) if isinstance(convs, int) else tuple(convs)
        if len(convs) != len(channels):
            raise ValueError(f"convs has {len(convs)} entries for {len(channels)} resolutions")
        self.z_dim, self.text_dim, self.resolution = z_dim, text_dim, 4 * 2 ** (len(channels) - 1)
        self.text_proj = nn.Linear(text_dim, w_dim)
        self.mapping = nn.Sequential(nn.Linear(z_dim + w_dim, w_dim), nn.LeakyReLU(0.2),
                                     nn.Linear(w_dim, w_dim), nn.LeakyReLU(0.2))
        self.input = nn.Linear(w_dim, channels[0] * 16)
        self.blocks = nn.ModuleList(GenBlock(channels[max(i - 1, 0)], c, w_dim, n, up=i > 0)
                                    for i, (c, n) in enumerate(zip(channels, convs)))
        init_weights(self)

    def style(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        c = F.leaky_relu(self.text_proj(text), 0.2)                # (B, w_dim)
        return self.mapping(torch.cat([z, c], dim=1))              # (B, w_dim)

    def synthesis(self, w: torch.Tensor) -> torch.Tensor:
        x = self.input(w).view(len(w), -1, 4, 4)                   # (B, C0, 4, 4)
        rgb = None
        for block in self.blocks:
            x, y = block(x, w)
            rgb = y if rgb is None else F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False) + y
        return rgb                                                 # (B, 3, R, R)

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.style(z, text))


class DiscBlock(nn.Module):
    """Residual: (conv3x3 -> lrelu -> avgpool2 -> conv3x3 -> lrelu) + conv1x1(avgpool2(x)), scaled by 1/sqrt(2).

    The second conv runs after the pooling, at a quarter of the cost (the first block is at 64x64)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_in, 3, padding=1)
        self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H/2, W/2)
        h = F.avg_pool2d(F.leaky_relu(self.conv1(x), 0.2), 2)
        h = F.leaky_relu(self.conv2(h), 0.2)
        return (h + self.skip(F.avg_pool2d(x, 2))) * 2 ** -0.5


class Discriminator(nn.Module):
    """Projection discriminator: image (B, 3, R, R) and caption embedding (B, text_dim) -> logit (B,).

    channels   feature channels at R, R/2, ..., 4x4 (the reverse of the generator's)
    features   size of phi(x), the image feature the caption embedding is projected onto
    """

    def __init__(self, text_dim: int = 384, channels: tuple[int, ...] = (16, 32, 64, 128, 256), features: int = 256):
        super().__init__()
        self.from_rgb = nn.Conv2d(3, channels[0], 1)
        self.blocks = nn.ModuleList(DiscBlock(a, b) for a, b in zip(channels[:-1], channels[1:]))
        self.final = nn.Conv2d(channels[-1], channels[-1], 3, padding=1)
        self.fc = nn.Linear(channels[-1] * 16, features)
        self.out = nn.Linear(features, 1)          # psi
        self.embed = nn.Linear(text_dim, features, bias=False)  # the caption's projection
        init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.from_rgb(x), 0.2)     # (B, C0, R, R)
        for block in self.blocks:
            h = block(h)                            # ... (B, C_last, 4, 4)
        h = F.leaky_relu(self.final(h), 0.2)
        return F.leaky_relu(self.fc(h.flatten(1)), 0.2)  # phi(x): (B, features)

    def score(self, phi: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """D(x, y) from phi(x): psi(phi) + <embed(y), phi>, (B,)."""
        return self.out(phi).squeeze(1) + (self.embed(text) * phi).sum(dim=1)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.score(self.features(x), text)
