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

from designerbox.pipelines.sampling import draw, initial_noise  # noqa: F401 (initial_noise: re-exported)
from designerbox.samplers import DiscreteEpsDenoiser, DiscreteVDenoiser


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

    def conditions(self, prompt: str, negative_prompt: str | None, batch: int, width: int, height: int):
        """The pooled sentence embeddings of the prompt and the negative prompt, (B, 384) each."""
        _, pooled = self.text_encoder([prompt, negative_prompt or ""])  # (2, 384)
        return ({"pooled": pooled[:1].expand(batch, -1).to(self.device)},
                {"pooled": pooled[1:].expand(batch, -1).to(self.device)})

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        return (3, height, width)  # pixel space

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return images * 2 - 1  # [0, 1] -> the [-1, 1] the network was trained on

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float().cpu() + 1) / 2).clamp(0, 1)

    def preview(self, denoised: torch.Tensor) -> torch.Tensor:
        """The sampler's current estimate as an image: in pixel space it already is one."""
        return self.decode(denoised)


@torch.no_grad()
def text_to_image(model: PixelDiffusion, prompt: str, negative_prompt: str, *, width: int, height: int,
                  steps: int, sampler: str, schedule: str, cfg_scale: float, seeds: list[int],
                  callback: Callable[[dict], None] | None = None, **image_inputs) -> torch.Tensor:
    """Returns images (B, 3, H, W) in [0, 1] on the CPU, B = len(seeds); image_inputs: init_images,
    strength, mask (pipelines/sampling.draw)."""
    return draw(model, prompt, negative_prompt, width=width, height=height, steps=steps, sampler=sampler,
                schedule=schedule, cfg_scale=cfg_scale, seeds=seeds, callback=callback, **image_inputs)


def to_pil(images: torch.Tensor) -> list:
    from PIL import Image

    arr = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (B, H, W, 3)
    return [Image.fromarray(a) for a in arr]
