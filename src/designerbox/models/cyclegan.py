"""The ResNet generator of CycleGAN, in the layout of the `vintagify==0.1.2` checkpoint ("vintage photo").

Zhu et al. 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks"
(arXiv:1703.10593), appendix 7.2: the generator of Johnson et al. 2016 (arXiv:1603.08155),

    c7s1-64 -> d128 -> d256 -> n_blocks x R256 -> u128 -> u64 -> c7s1-3 -> tanh

c7s1-k: reflection pad 3, 7x7 conv, stride 1; dk: 3x3 conv, stride 2; Rk: a residual block of two
reflection-padded 3x3 convs; uk: 3x3 transposed conv, stride 1/2. Every conv but the last is
followed by InstanceNorm (here with a learned scale and shift, `affine=True`, as vintagify trained
it; no running statistics, so a pixel's output depends on the statistics of the whole image) and
ReLU. The layers sit in one `nn.Sequential` called `model`, as in the checkpoint, so its keys load
unchanged; the indices:

    model.1 conv 7x7, model.2 norm        model.4 / model.7 down convs, model.5 / model.8 norms
    model.10 .. model.(9+n_blocks) ResnetBlock: block.1 conv, block.2 norm, block.5 conv, block.6 norm
    then up convs (ConvTranspose2d) and norms, and the 7x7 output conv (model.26 for 9 blocks)

Pixels in and out are RGB scaled to -1..1 (`x / 127.5 - 1`); the pipeline converts. The network is
fully convolutional: any height and width that are multiples of `size_multiple` (4) come out the same size.
"""

from __future__ import annotations

import torch
from torch import nn


class ResnetBlock(nn.Module):
    """x + (pad, conv 3x3, norm, relu, pad, conv 3x3, norm)(x)."""

    def __init__(self, dim: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim, affine=True), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, dim, h, w)
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's generator; config = these keyword arguments.

    input_nc   image channels in (3: RGB)
    output_nc  image channels out (3: RGB)
    ngf        channels of the first conv; the two down convs double it twice (64 -> 128 -> 256)
    n_blocks   residual blocks at 1/4 resolution (9 in the CycleGAN paper for 256 px and up)
    """

    size_multiple = 4  # two stride-2 convs down, two stride-2 transposed convs up

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9):
        super().__init__()
        if min(input_nc, output_nc, ngf, n_blocks) < 1:
            raise ValueError("ResnetGenerator needs input_nc, output_nc, ngf and n_blocks >= 1")
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7),
                                   nn.InstanceNorm2d(ngf, affine=True), nn.ReLU()]  # c7s1-64
        for mult in (1, 2):  # d128, d256
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
                       nn.InstanceNorm2d(ngf * mult * 2, affine=True), nn.ReLU()]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]  # R256 x n_blocks
        for mult in (4, 2):  # u128, u64
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(ngf * mult // 2, affine=True), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]  # c7s1-3
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) in -1..1, H and W multiples of 4
        return self.model(x)  # (B, 3, H, W) in -1..1
