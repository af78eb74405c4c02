"""Text to image with a pixel-space diffusion network conditioned on a sentence embedding.

The network is any diffusers UNet2DConditionModel trained as the built-in models are (DDPM noise
table, eps- or v-prediction, the pooled MiniLM caption embedding as class embedding; a network with
cross-attention blocks also attends to the caption's MiniLM token states, padded to TOKENS with a
mask); the sampler and schedule are chosen by name from designerbox.samplers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from designerbox.pipelines.sampling import draw, initial_noise  # noqa: F401 (initial_noise: re-exported)
from designerbox.samplers import DiscreteEpsDenoiser, DiscreteVDenoiser

TOKENS = 64  # token states a cross-attention network sees: prompts are padded (masked) or cut to this


def uses_tokens(config: dict) -> bool:
    """Whether a UNet config has cross-attention, i.e. is conditioned on token states, not only pooled."""
    blocks = list(config.get("down_block_types", [])) + list(config.get("up_block_types", []))
    return any("CrossAttn" in b for b in blocks) or config.get("mid_block_type") == "UNetMidBlock2DCrossAttn"


def pad_tokens(states: torch.Tensor, length: int = TOKENS) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, 384) token states with zeroed padding -> (B, length, 384) and the mask (B, length), 1 = a token."""
    mask = (states.abs().sum(-1) > 0).float()  # the encoder zeroes padding; a real token is never all zero
    states, mask = states[:, :length], mask[:, :length]
    pad = length - states.shape[1]
    return F.pad(states, (0, 0, 0, pad)), F.pad(mask, (0, pad))


@dataclass
class PixelDiffusion:
    """Everything a pixel-space text-to-image model needs, built by the registry's loader.

    unet            UNet2DConditionModel, eval mode
    text_encoder    MiniLMTextEncoder: prompts -> (token states, pooled embedding)
    alphas_cumprod  the DDPM noise table the network was trained on, (T,)
    prediction      "v" or "eps"
    tokens          the network has cross-attention: it is also given the prompt's token states
    """

    unet: nn.Module
    text_encoder: nn.Module
    alphas_cumprod: torch.Tensor
    prediction: str
    device: torch.device
    dtype: torch.dtype = torch.float32
    tokens: bool = False

    def denoiser(self):
        def net(x: torch.Tensor, t: torch.Tensor, pooled: torch.Tensor, tokens: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
            t = t.expand(x.shape[0]) if t.dim() else t.repeat(x.shape[0])
            cond = pooled.to(self.dtype)
            if tokens is None:  # the pooled embedding stands in as the one "token" (no cross-attention inside)
                return self.unet(x.to(self.dtype), t, encoder_hidden_states=cond[:, None], class_labels=cond).sample.float()
            return self.unet(x.to(self.dtype), t, encoder_hidden_states=tokens.to(self.dtype), class_labels=cond,
                             encoder_attention_mask=mask).sample.float()

        adapter = {"v": DiscreteVDenoiser, "eps": DiscreteEpsDenoiser}[self.prediction]
        return adapter(net, self.alphas_cumprod.to(self.device))

    def conditions(self, prompt: str, negative_prompt: str | None, batch: int, width: int, height: int):
        """The pooled sentence embeddings of the prompt and the negative prompt, (B, 384) each, and for
        a network with cross-attention their token states (B, TOKENS, 384) and masks (B, TOKENS)."""
        states, pooled = self.text_encoder([prompt, negative_prompt or ""])  # (2, T, 384), (2, 384)
        both = {"pooled": pooled}
        if self.tokens:
            both["tokens"], both["mask"] = pad_tokens(states)
        return ({k: v[:1].expand(batch, *v.shape[1:]).to(self.device) for k, v in both.items()},
                {k: v[1:].expand(batch, *v.shape[1:]).to(self.device) for k, v in both.items()})

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
