"""Text to image with Stable Diffusion XL base, driven by our samplers.

Podell et al. 2023 (SDXL): the latent diffusion of pipelines/stable_diffusion.py with a larger UNet
and richer conditioning, which is all this file adds:

  context      the penultimate hidden states of two text encoders side by side: CLIP ViT-L/14 (768)
               and OpenCLIP ViT-bigG/14 (1280), (N, 77, 2048)
  text_embeds  the pooled, projected output of the second encoder, (N, 1280)
  time_ids     the size and crop conditioning of section 2.2: original size, crop top-left, target
               size, as (height, width) pairs, (N, 6); we draw uncropped at the asked size

The steps are StableDiffusionXLPipeline.__call__'s. The unconditional branch of classifier-free
guidance is the encoded negative prompt when one is given, and zeros (token states and pooled) when
it is empty, as diffusers does for SDXL base (`force_zeros_for_empty_prompt`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from designerbox.pipelines.prompt_weights import encode_weighted
from designerbox.pipelines.stable_diffusion import decode_latents
from designerbox.pipelines.text_to_image import initial_noise
from designerbox.samplers import CFGDenoiser, DiscreteEpsDenoiser, DiscreteVDenoiser, get_sampler, make_sigmas


@dataclass
class LatentDiffusionXL:
    """An SDXL base model, built by registry.user_checkpoints.load_stable_diffusion.

    unet            UNet2DConditionModel with addition_embed_type "text_time"
    vae             AutoencoderKL; float32 when its config says force_upcast (SDXL's VAE overflows in float16)
    text_encoder    transformers CLIPTextModel (CLIP ViT-L/14)
    text_encoder_2  transformers CLIPTextModelWithProjection (OpenCLIP ViT-bigG/14)
    tokenizer       CLIPTokenizer padding with "<|endoftext|>"
    tokenizer_2     the same vocabulary padding with "!" (id 0), as SDXL's published tokenizer_2
    alphas_cumprod  the DDPM noise table the UNet was trained on, (T,)
    prediction      "eps" or "v"
    """

    unet: nn.Module
    vae: nn.Module
    text_encoder: nn.Module
    text_encoder_2: nn.Module
    tokenizer: object
    tokenizer_2: object
    alphas_cumprod: torch.Tensor
    prediction: str
    device: torch.device
    dtype: torch.dtype = torch.float32

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent along a side (8 for SDXL's VAE)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    def denoiser(self):
        def net(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, text_embeds: torch.Tensor,
                time_ids: torch.Tensor) -> torch.Tensor:
            t = t.expand(x.shape[0]) if t.dim() else t.repeat(x.shape[0])
            added = {"text_embeds": text_embeds.to(self.dtype), "time_ids": time_ids.to(self.dtype)}
            return self.unet(x.to(self.dtype), t, encoder_hidden_states=context.to(self.dtype),
                             added_cond_kwargs=added).sample.float()

        adapter = {"v": DiscreteVDenoiser, "eps": DiscreteEpsDenoiser}[self.prediction]
        return adapter(net, self.alphas_cumprod.to(self.device))

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(context, pooled): both encoders' penultimate token states side by side, (N, 77 * K, D1 + D2),
        and the second encoder's pooled projection of each prompt's first chunk, (N, P). A1111 emphasis,
        BREAK and long prompts in K chunks as pipelines/prompt_weights.py describes."""
        pooled = {}

        def encode_1(ids: torch.Tensor) -> torch.Tensor:
            return self.text_encoder(ids, output_hidden_states=True).hidden_states[-2]  # (M, 77, D1)

        def encode_2(ids: torch.Tensor) -> torch.Tensor:
            out = self.text_encoder_2(ids, output_hidden_states=True)
            pooled["all"] = out.text_embeds  # (M, P)
            return out.hidden_states[-2]     # (M, 77, D2)

        states_1, _ = encode_weighted(self.tokenizer, encode_1, prompts, self.device)
        states_2, first = encode_weighted(self.tokenizer_2, encode_2, prompts, self.device)
        if states_1.shape[1] != states_2.shape[1]:  # same vocabulary: the same chunks, unless a tokenizer differs
            raise ValueError(f"the two tokenizers split the prompt differently ({states_1.shape[1]} vs "
                             f"{states_2.shape[1]} token states)")
        return torch.cat([states_1, states_2], dim=-1), pooled["all"][first]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [0, 1], (B, 3, H, W) on the CPU."""
        return decode_latents(self.vae, latents)


def size_conditioning(width: int, height: int) -> torch.Tensor:
    """SDXL's micro-conditioning (section 2.2): original size, crop top-left, target size, each as
    (height, width); an uncropped image drawn at the asked size, as diffusers' defaults. (1, 6)"""
    return torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32)


@torch.no_grad()
def sdxl_text_to_image(model: LatentDiffusionXL, prompt: str, negative_prompt: str | None, *, width: int,
                       height: int, steps: int, sampler: str, schedule: str, cfg_scale: float, seeds: list[int],
                       callback: Callable[[dict], None] | None = None) -> torch.Tensor:
    """Returns images (B, 3, H, W) in [0, 1] on the CPU, B = len(seeds)."""
    batch, f = len(seeds), model.vae_scale_factor
    if width % f or height % f:
        raise ValueError(f"width and height must be multiples of {f} for this model, got {width}x{height}")
    # 1. encode the prompt, and the negative prompt when there is one; an empty one is zeros
    if negative_prompt:
        context, pooled = model.encode_prompt([prompt, negative_prompt])  # (2, 77, D), (2, P)
    else:
        context, pooled = model.encode_prompt([prompt])  # (1, 77, D), (1, P)
        context, pooled = torch.cat([context, torch.zeros_like(context)]), torch.cat([pooled, torch.zeros_like(pooled)])
    time_ids = size_conditioning(width, height).to(model.device).expand(batch, -1)  # (B, 6)
    cond = {"context": context[:1].expand(batch, -1, -1), "text_embeds": pooled[:1].expand(batch, -1),
            "time_ids": time_ids}
    uncond = {"context": context[1:].expand(batch, -1, -1), "text_embeds": pooled[1:].expand(batch, -1),
              "time_ids": time_ids}
    # 2. UNet -> denoiser D(x, sigma) -> classifier-free guidance
    denoiser = model.denoiser()
    guided = CFGDenoiser(denoiser, cfg_scale)
    # 3. the noise levels
    sigmas = make_sigmas(schedule, steps, denoiser).to(model.device)
    # 4. latent noise at sigma_max, one generator per image; ancestral samplers draw from seeds[0]'s
    x = initial_noise(seeds, (model.latent_channels, height // f, width // f)).to(model.device) * sigmas[0]
    generator = torch.Generator().manual_seed(seeds[0])
    # 5. sample in latent space
    x = get_sampler(sampler)(guided, x, sigmas, extra_args={"cond": cond, "uncond": uncond},
                             callback=callback, generator=generator)  # (B, C, H/f, W/f)
    # 6. decode with the VAE
    return model.decode(x)
