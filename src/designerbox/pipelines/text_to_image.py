"""Text to image with a pixel-space diffusion network conditioned on a sentence embedding.

The network is any diffusers UNet2DConditionModel trained as the built-in models are (DDPM noise
table, eps- or v-prediction, the pooled MiniLM caption embedding as class embedding); the
sampler and schedule are chosen by name from designerbox.samplers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from designerbox.samplers import CFGDenoiser, DiscreteEpsDenoiser, DiscreteVDenoiser, get_sampler, make_sigmas


@dataclass
class PixelDiffusion:
    """Everything a pixel-space text-to-image model needs, built by the registry's loader.

    unet            UNet2DConditionModel, eval mode
    text_encoder    MiniLMTextEncoder: prompts -> (token states, pooled embedding)
    alphas_cumprod  the DDPM noise table the network was trained on, (T,)
    prediction      "v" or "eps"
    """

    unet: nn.Module
    text_encoder: nn.Module
    alphas_cumprod: torch.Tensor
    prediction: str
    device: torch.device
    dtype: torch.dtype = torch.float32

    def denoiser(self):
        def net(x: torch.Tensor, t: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
            t = t.expand(x.shape[0]) if t.dim() else t.repeat(x.shape[0])
            cond = pooled.to(self.dtype)
            return self.unet(x.to(self.dtype), t, encoder_hidden_states=cond[:, None], class_labels=cond).sample.float()

        adapter = {"v": DiscreteVDenoiser, "eps": DiscreteEpsDenoiser}[self.prediction]
        return adapter(net, self.alphas_cumprod.to(self.device))


def initial_noise(seeds: list[int], shape: tuple[int, int, int]) -> torch.Tensor:
    """Unit Gaussian noise, one CPU generator per image (seed, seed+1, ...), so every image of a
    batch has the noise it would have alone, on any device."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])


@torch.no_grad()
def text_to_image(model: PixelDiffusion, prompt: str, negative_prompt: str, *, width: int, height: int,
                  steps: int, sampler: str, schedule: str, cfg_scale: float, seeds: list[int],
                  callback: Callable[[dict], None] | None = None) -> torch.Tensor:
    """Returns images (B, 3, H, W) in [0, 1] on the CPU, B = len(seeds)."""
    batch = len(seeds)
    # 1. encode the prompt and the negative prompt (the unconditional branch of CFG)
    _, pooled = model.text_encoder([prompt, negative_prompt])                  # (2, 384)
    cond = {"pooled": pooled[:1].expand(batch, -1).to(model.device)}
    uncond = {"pooled": pooled[1:].expand(batch, -1).to(model.device)}
    # 2. network -> denoiser D(x, sigma) -> classifier-free guidance
    denoiser = model.denoiser()
    guided = CFGDenoiser(denoiser, cfg_scale)
    # 3. the noise levels
    sigmas = make_sigmas(schedule, steps, denoiser).to(model.device)
    # 4. starting noise at sigma_max; ancestral samplers draw more from a generator seeded by seeds[0]
    x = initial_noise(seeds, (3, height, width)).to(model.device) * sigmas[0]  # (B, 3, H, W)
    generator = torch.Generator().manual_seed(seeds[0])
    # 5. sample
    x = get_sampler(sampler)(guided, x, sigmas, extra_args={"cond": cond, "uncond": uncond},
                             callback=callback, generator=generator)
    # 6. from [-1, 1] to [0, 1]
    return ((x.float().cpu() + 1) / 2).clamp(0, 1)


def to_pil(images: torch.Tensor) -> list:
    from PIL import Image

    arr = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (B, H, W, 3)
    return [Image.fromarray(a) for a in arr]
