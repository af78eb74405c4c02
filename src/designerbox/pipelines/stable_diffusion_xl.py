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

The SDXL refiner (the same class without the first text encoder) conditions on OpenCLIP ViT-bigG/14
alone, context (N, 77, 1280), and replaces the target size of time_ids by an aesthetic score (section
2.5 of the paper; StableDiffusionXLImg2ImgPipeline with requires_aesthetics_score): original size,
crop top-left, score, (N, 5), with 6.0 for the prompt and 2.5 for the negative branch by default.
It encodes an empty negative prompt (its force_zeros_for_empty_prompt is false). It is meant for
image to image on a base model's output (jobs/generate.refine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from designerbox.pipelines.prompt_weights import encode_weighted
from designerbox.pipelines.sampling import draw
from designerbox.pipelines.stable_diffusion import VAELatents
from designerbox.samplers import DiscreteEpsDenoiser, DiscreteVDenoiser


@dataclass
class LatentDiffusionXL(VAELatents):
    """An SDXL base or refiner model, built by registry.user_checkpoints.load_stable_diffusion.

    unet            UNet2DConditionModel with addition_embed_type "text_time"
    vae             AutoencoderKL; float32 when its config says force_upcast (SDXL's VAE overflows in float16)
    text_encoder    transformers CLIPTextModel (CLIP ViT-L/14); None for the refiner
    text_encoder_2  transformers CLIPTextModelWithProjection (OpenCLIP ViT-bigG/14)
    tokenizer       CLIPTokenizer padding with "<|endoftext|>"
    tokenizer_2     the same vocabulary padding with "!" (id 0), as SDXL's published tokenizer_2
    alphas_cumprod  the DDPM noise table the UNet was trained on, (T,)
    prediction      "eps" or "v"
    embedding_tokens  textual-inversion embeddings given for this request: {name: placeholder ids}
                    (set by pipelines/textual_inversion.set_embeddings)
    vae_tiling      "auto", "on" or "off" (VAELatents)
    aesthetic_score the refiner's score conditioning for the prompt (6.0 as published) and for the
                    negative branch (negative_aesthetic_score, 2.5); None for the base
    """

    unet: nn.Module
    vae: nn.Module
    text_encoder: nn.Module | None
    text_encoder_2: nn.Module
    tokenizer: object | None
    tokenizer_2: object
    alphas_cumprod: torch.Tensor
    prediction: str
    device: torch.device
    dtype: torch.dtype = torch.float32
    embedding_tokens: dict[str, list[int]] = field(default_factory=dict)
    vae_tiling: str = "auto"
    aesthetic_score: float | None = None
    negative_aesthetic_score: float = 2.5
    latent_family = "sdxl"  # the preview's latent-to-RGB map (not a field)

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
            # the projected state at each chunk's first EOS, as transformers pools; taken here because its
            # own pooling (eos_token_id 2 in SDXL's config: the largest id) would pick an embedding's token
            eos = (ids == self.tokenizer_2.eos_token_id).int().argmax(-1)                 # (M,)
            last = out.last_hidden_state[torch.arange(len(ids), device=ids.device), eos]  # (M, D2)
            pooled["all"] = self.text_encoder_2.text_projection(last)                      # (M, P)
            return out.hidden_states[-2]                                                    # (M, 77, D2)

        states_2, first = encode_weighted(self.tokenizer_2, encode_2, prompts, self.device, self.embedding_tokens)
        if self.text_encoder is None:  # the refiner: OpenCLIP bigG alone
            return states_2, pooled["all"][first]
        states_1, _ = encode_weighted(self.tokenizer, encode_1, prompts, self.device, self.embedding_tokens)
        if states_1.shape[1] != states_2.shape[1]:  # same vocabulary: the same chunks, unless a tokenizer differs
            raise ValueError(f"the two tokenizers split the prompt differently ({states_1.shape[1]} vs "
                             f"{states_2.shape[1]} token states)")
        return torch.cat([states_1, states_2], dim=-1), pooled["all"][first]

    def conditions(self, prompt: str, negative_prompt: str | None, batch: int, width: int, height: int):
        """Both encoders' token states, the pooled projection and the size conditioning, per branch; an
        empty negative prompt is zeros (diffusers' force_zeros_for_empty_prompt)."""
        if negative_prompt or self.aesthetic_score is not None:  # the refiner encodes an empty negative too
            context, pooled = self.encode_prompt([prompt, negative_prompt or ""])  # (2, 77 * K, D), (2, P)
        else:
            context, pooled = self.encode_prompt([prompt])  # (1, 77 * K, D), (1, P)
            context = torch.cat([context, torch.zeros_like(context)])
            pooled = torch.cat([pooled, torch.zeros_like(pooled)])
        if self.aesthetic_score is None:
            time_ids = uncond_ids = size_conditioning(width, height).to(self.device).expand(batch, -1)  # (B, 6)
        else:
            time_ids = aesthetic_conditioning(width, height, self.aesthetic_score).to(self.device).expand(batch, -1)
            uncond_ids = aesthetic_conditioning(width, height, self.negative_aesthetic_score).to(self.device).expand(
                batch, -1)  # (B, 5)
        cond = {"context": context[:1].expand(batch, -1, -1), "text_embeds": pooled[:1].expand(batch, -1),
                "time_ids": time_ids}
        uncond = {"context": context[1:].expand(batch, -1, -1), "text_embeds": pooled[1:].expand(batch, -1),
                  "time_ids": uncond_ids}
        return cond, uncond



def size_conditioning(width: int, height: int) -> torch.Tensor:
    """SDXL's micro-conditioning (section 2.2): original size, crop top-left, target size, each as
    (height, width); an uncropped image drawn at the asked size, as diffusers' defaults. (1, 6)"""
    return torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32)


def aesthetic_conditioning(width: int, height: int, score: float) -> torch.Tensor:
    """The refiner's micro-conditioning: original size (height, width), crop top-left, aesthetic score. (1, 5)"""
    return torch.tensor([[height, width, 0, 0, score]], dtype=torch.float32)


@torch.no_grad()
def sdxl_text_to_image(model: LatentDiffusionXL, prompt: str, negative_prompt: str | None, *, width: int,
                       height: int, steps: int, sampler: str, schedule: str, cfg_scale: float, seeds: list[int],
                       callback: Callable[[dict], None] | None = None, **image_inputs) -> torch.Tensor:
    """Returns images (B, 3, H, W) in [0, 1] on the CPU, B = len(seeds); image_inputs: init_images,
    strength, mask (pipelines/sampling.draw: image to image and inpainting)."""
    return draw(model, prompt, negative_prompt, width=width, height=height, steps=steps, sampler=sampler,
                schedule=schedule, cfg_scale=cfg_scale, seeds=seeds, callback=callback, **image_inputs)
