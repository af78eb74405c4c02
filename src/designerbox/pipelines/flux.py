"""Text to image with FLUX.1 (dev and schnell), driven by our samplers.

Black Forest Labs 2024: a rectified-flow transformer (double-stream then single-stream blocks) on the
latents of a 16-channel KL autoencoder, packed into 2x2 patches: (B, 16, h, w) -> (B, h/2 * w/2, 64)
tokens with (0, row, column) position ids for the rotary embedding. As in FluxPipeline:

  context   T5-XXL token states, (N, 512, 4096), with all-zero text position ids
  pooled    CLIP ViT-L/14's pooled output, (N, 768)
  timestep  t in [0, 1] (diffusers passes sigma * 1000 / 1000)
  guidance  FLUX dev was distilled from classifier-free guidance: the guidance scale is an input of
            the network (guidance_embeds) and the sampler runs one pass per step (our cfg_scale is
            that input; pipelines/sampling.draw sees `guidance_embedded`). schnell has none and is
            sampled without guidance (cfg_scale 1), in about 4 steps.

The velocity goes through samplers.FlowDenoiser. The shift of the noise levels is the scheduler
config's: a fixed `shift` (schnell: 1), or with use_dynamic_shifting (dev) mu grows linearly with the
number of image tokens from base_shift at base_image_seq_len to max_shift at max_image_seq_len, and
the shift is exp(mu) (diffusers' calculate_shift and time_shift, which is a scaling of sigma by
exp(mu) in our view): so the denoiser depends on the size drawn (`shift_by_size`).
Prompts are tokenized plainly (77 CLIP tokens, max_sequence_length T5 tokens; emphasis marks out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from designerbox.pipelines.sampling import draw
from designerbox.pipelines.stable_diffusion import VAELatents
from designerbox.pipelines.stable_diffusion_3 import plain_prompt, t5_states
from designerbox.samplers import FlowDenoiser


def pack(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h/2 * w/2, 4C): 2x2 patches as tokens (FluxPipeline._pack_latents)."""
    B, C, h, w = x.shape
    x = x.view(B, C, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)  # (B, h/2, w/2, C, 2, 2)
    return x.reshape(B, (h // 2) * (w // 2), C * 4)


def unpack(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of pack: (B, h/2 * w/2, 4C) -> (B, C, h, w)."""
    B, _, D = x.shape
    x = x.view(B, h // 2, w // 2, D // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)  # (B, C, h/2, 2, w/2, 2)
    return x.reshape(B, D // 4, h, w)


def image_ids(h: int, w: int, device) -> torch.Tensor:
    """(h/2 * w/2, 3) position ids of the packed tokens: (0, row, column)."""
    ids = torch.zeros(h // 2, w // 2, 3, device=device)
    ids[..., 1] += torch.arange(h // 2, device=device)[:, None]
    ids[..., 2] += torch.arange(w // 2, device=device)[None, :]
    return ids.reshape(-1, 3)


def dynamic_shift(tokens: int, base_seq: int = 256, max_seq: int = 4096, base_shift: float = 0.5,
                  max_shift: float = 1.15) -> float:
    """exp(mu), mu linear in the number of image tokens (diffusers' calculate_shift)."""
    m = (max_shift - base_shift) / (max_seq - base_seq)
    return math.exp(tokens * m + base_shift - m * base_seq)


@dataclass
class Flux(VAELatents):
    """A FLUX.1 model, built by registry.flow_models.load_flow_model.

    transformer      diffusers FluxTransformer2DModel (guidance_embeds: dev)
    vae              AutoencoderKL with 16 latent channels, scaling_factor and shift_factor
    text_encoder     CLIPTextModel (CLIP ViT-L/14): the pooled output
    text_encoder_2   T5EncoderModel (T5-XXL): the token states
    tokenizer(_2)    CLIP's (77 tokens) and T5's (from the user's files)
    scheduler        the scheduler config: shift, use_dynamic_shifting, base/max_shift, base/max_image_seq_len
    """

    transformer: nn.Module
    vae: nn.Module
    text_encoder: nn.Module
    text_encoder_2: nn.Module
    tokenizer: object
    tokenizer_2: object
    scheduler: dict
    device: torch.device
    dtype: torch.dtype = torch.float32
    num_train_timesteps: int = 1000
    max_sequence_length: int = 512
    vae_tiling: str = "auto"
    latent_family = "flux"   # the preview's latent-to-RGB map (not a field)
    shift_by_size = True     # denoiser(width, height): the dynamic shift depends on the image tokens

    @property
    def guidance_embedded(self) -> bool:
        """FLUX dev: the guidance scale is the network's input, not classifier-free guidance."""
        return bool(self.transformer.config.guidance_embeds)

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        f = self.vae_scale_factor * 2  # latents go in 2x2 patches
        if width % f or height % f:
            raise ValueError(f"width and height must be multiples of {f} for FLUX, got {width}x{height}")
        return super().latent_shape(width, height)

    def shift(self, width: int, height: int) -> float:
        s = self.scheduler
        if not s.get("use_dynamic_shifting"):
            return float(s.get("shift", 1.0))
        tokens = (height // self.vae_scale_factor // 2) * (width // self.vae_scale_factor // 2)
        return dynamic_shift(tokens, s.get("base_image_seq_len", 256), s.get("max_image_seq_len", 4096),
                             s.get("base_shift", 0.5), s.get("max_shift", 1.15))

    def denoiser(self, width: int, height: int):
        def net(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, pooled: torch.Tensor,
                guidance: torch.Tensor | None = None) -> torch.Tensor:
            h, w = x.shape[-2:]
            out = self.transformer(
                hidden_states=pack(x).to(self.dtype), timestep=(t / self.num_train_timesteps).to(self.dtype),
                guidance=guidance, pooled_projections=pooled.to(self.dtype),
                encoder_hidden_states=context.to(self.dtype),
                txt_ids=torch.zeros(context.shape[1], 3, device=x.device, dtype=self.dtype),
                img_ids=image_ids(h, w, x.device).to(self.dtype)).sample                  # (B, h/2 * w/2, 4C)
            return unpack(out.float(), h, w)                                               # (B, C, h, w)

        return FlowDenoiser(net, shift=self.shift(width, height), num_train_timesteps=self.num_train_timesteps)

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(T5 token states (N, L, D), CLIP pooled output (N, P))."""
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.device)  # (N, 77)
        pooled = self.text_encoder(ids, output_hidden_states=False).pooler_output         # (N, P)
        context = t5_states(self.tokenizer_2, self.text_encoder_2, prompts, self.max_sequence_length, self.device)
        return context, pooled

    def conditions(self, prompt: str, negative_prompt: str | None, batch: int, width: int, height: int):
        context, pooled = self.encode_prompt([plain_prompt(prompt), plain_prompt(negative_prompt or "")])
        return ({"context": context[:1].expand(batch, -1, -1), "pooled": pooled[:1].expand(batch, -1)},
                {"context": context[1:].expand(batch, -1, -1), "pooled": pooled[1:].expand(batch, -1)})


@torch.no_grad()
def flux_text_to_image(model: Flux, prompt: str, negative_prompt: str | None, *, width: int, height: int, steps: int,
                       sampler: str, schedule: str, cfg_scale: float, seeds: list[int],
                       callback: Callable[[dict], None] | None = None, **image_inputs) -> torch.Tensor:
    """Returns images (B, 3, H, W) in [0, 1] on the CPU, B = len(seeds); cfg_scale is FLUX dev's embedded
    guidance (schnell: 1 for no guidance); image_inputs as pipelines/sampling.draw."""
    return draw(model, prompt, negative_prompt, width=width, height=height, steps=steps, sampler=sampler,
                schedule=schedule, cfg_scale=cfg_scale, seeds=seeds, callback=callback, **image_inputs)
