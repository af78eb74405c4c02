"""Text to image with Stable Diffusion 3 / 3.5, driven by our samplers.

Esser et al. 2024 (SD3): a rectified-flow MMDiT on the latents of a 16-channel KL autoencoder. The
transformer predicts the velocity v = eps - x_0 at timestep t * 1000, so it goes through the flow
adapter (samplers.FlowDenoiser, with the scheduler config's shift, 3.0 for SD3) and every sampler
and schedule works on it. Conditioning, as StableDiffusion3Pipeline.encode_prompt builds it:

  context   CLIP ViT-L/14 and OpenCLIP ViT-bigG/14 penultimate token states side by side (77, 768 + 1280),
            zero-padded to T5's width and followed by T5-XXL's token states (256 by default): (N, 77 + 256, 4096)
  pooled    both CLIP encoders' projected pooled outputs side by side, (N, 768 + 1280)

Without a T5 (SD3 can run without text_encoder_3) its part of the context is zeros, as diffusers does.
Classifier-free guidance takes the encoded negative prompt ("" when none is given). The latents are
(z - shift_factor) * scaling_factor of the VAE's mean (VAELatents). Prompts are tokenized plainly
(truncated at 77 CLIP tokens and max_sequence_length T5 tokens): A1111 emphasis marks are taken out
(plain_prompt) but their weights are not applied, and there is no LoRA or textual inversion for
SD3 and FLUX yet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from designerbox.pipelines.sampling import draw
from designerbox.pipelines.stable_diffusion import VAELatents
from designerbox.samplers import FlowDenoiser


def plain_prompt(text: str) -> str:
    """A prompt without A1111's emphasis marks and BREAKs ("a (red:1.3) car" -> "a red car"): what the
    flow models' encoders read, as they take no per-token weights here."""
    from designerbox.pipelines.prompt_weights import parse_emphasis

    return re.sub(r"\s+", " ", "".join(t if w >= 0 else " " for t, w in parse_emphasis(text))).strip()


def clip_states(tokenizer, encoder: nn.Module, prompts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
    """(penultimate token states (N, 77, D), the encoder's first output (N, P): its projected pooled
    state for a CLIPTextModelWithProjection, as diffusers' _get_clip_prompt_embeds takes it)."""
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(device)  # (N, 77)
    out = encoder(ids, output_hidden_states=True)
    return out.hidden_states[-2], out[0]


def t5_states(tokenizer, encoder: nn.Module, prompts: list[str], max_length: int, device) -> torch.Tensor:
    """T5 encoder token states (N, max_length, D), padded and truncated to max_length."""
    ids = tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True, add_special_tokens=True,
                    return_tensors="pt").input_ids.to(device)  # (N, L)
    return encoder(ids)[0]


@dataclass
class StableDiffusion3(VAELatents):
    """An SD3 / SD3.5 model, built by registry.flow_models.load_flow_model.

    transformer          diffusers SD3Transformer2DModel
    vae                  AutoencoderKL with 16 latent channels, scaling_factor and shift_factor
    text_encoder(_2)     CLIPTextModelWithProjection: CLIP ViT-L/14, OpenCLIP ViT-bigG/14
    text_encoder_3       T5EncoderModel (T5-XXL), or None
    tokenizer(_2, _3)    CLIP tokenizers (77 tokens) and T5's (sentencepiece, from the user's files)
    shift                the flow schedule's shift (scheduler_config.json "shift")
    num_train_timesteps  the timestep scale of the network's input (1000)
    max_sequence_length  T5 tokens (256 as diffusers' default)
    """

    transformer: nn.Module
    vae: nn.Module
    text_encoder: nn.Module
    text_encoder_2: nn.Module
    text_encoder_3: nn.Module | None
    tokenizer: object
    tokenizer_2: object
    tokenizer_3: object | None
    shift: float
    device: torch.device
    dtype: torch.dtype = torch.float32
    num_train_timesteps: int = 1000
    max_sequence_length: int = 256
    vae_tiling: str = "auto"
    latent_family = "sd3"  # the preview's latent-to-RGB map (not a field)

    def denoiser(self):
        def net(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
            return self.transformer(hidden_states=x.to(self.dtype), timestep=t.to(self.dtype),
                                    encoder_hidden_states=context.to(self.dtype),
                                    pooled_projections=pooled.to(self.dtype)).sample.float()

        return FlowDenoiser(net, shift=self.shift, num_train_timesteps=self.num_train_timesteps)

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(context (N, 77 + L, D_t5), pooled (N, P1 + P2)) as described in the module docstring."""
        states_1, pooled_1 = clip_states(self.tokenizer, self.text_encoder, prompts, self.device)
        states_2, pooled_2 = clip_states(self.tokenizer_2, self.text_encoder_2, prompts, self.device)
        clip = torch.cat([states_1, states_2], dim=-1)  # (N, 77, D1 + D2)
        if self.text_encoder_3 is not None:
            t5 = t5_states(self.tokenizer_3, self.text_encoder_3, prompts, self.max_sequence_length, self.device)
        else:
            width = self.transformer.config.joint_attention_dim
            t5 = clip.new_zeros(len(prompts), self.max_sequence_length, width)
        clip = F.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))  # zeros up to T5's width
        return torch.cat([clip, t5.to(clip.dtype)], dim=-2), torch.cat([pooled_1, pooled_2], dim=-1)

    def conditions(self, prompt: str, negative_prompt: str | None, batch: int, width: int, height: int):
        context, pooled = self.encode_prompt([plain_prompt(prompt), plain_prompt(negative_prompt or "")])
        return ({"context": context[:1].expand(batch, -1, -1), "pooled": pooled[:1].expand(batch, -1)},
                {"context": context[1:].expand(batch, -1, -1), "pooled": pooled[1:].expand(batch, -1)})


@torch.no_grad()
def sd3_text_to_image(model: StableDiffusion3, prompt: str, negative_prompt: str | None, *, width: int, height: int,
                      steps: int, sampler: str, schedule: str, cfg_scale: float, seeds: list[int],
                      callback: Callable[[dict], None] | None = None, **image_inputs) -> torch.Tensor:
    """Returns images (B, 3, H, W) in [0, 1] on the CPU, B = len(seeds); image_inputs as pipelines/sampling.draw."""
    return draw(model, prompt, negative_prompt, width=width, height=height, steps=steps, sampler=sampler,
                schedule=schedule, cfg_scale=cfg_scale, seeds=seeds, callback=callback, **image_inputs)
