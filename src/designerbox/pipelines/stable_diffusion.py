"""Text to image with a Stable Diffusion 1.x latent diffusion model, driven by our samplers.

Rombach et al. 2022: a UNet denoises the latents of a KL autoencoder (VAE), conditioned by cross-
attention on the per-token states of the CLIP text encoder. The UNet is a DDPM network (eps- or
v-prediction on the 1000-step scaled-linear table), so it goes through the same denoiser adapters and
samplers as the built-in pixel models; only the space (latents, decoded at the end) and the
conditioning (token states, not a pooled vector) differ.

The steps are StableDiffusionPipeline.__call__'s: encode prompt and negative prompt (77 tokens, the
text encoder's last hidden state), noise in latent space, sample with classifier-free guidance,
latents / scaling_factor through the VAE decoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from designerbox.pipelines.prompt_weights import encode_weighted
from designerbox.pipelines.sampling import draw
from designerbox.samplers import DiscreteEpsDenoiser, DiscreteVDenoiser


VAE_TILING = ("auto", "on", "off")
TILING_PIXELS = 1536 * 1536  # "auto" tiles the VAE above this many pixels (not at SD's or SDXL's native sizes)


def vae_tiling_mode(value: str | None) -> str:
    """DESIGNERBOX_VAE_TILING checked: auto (the default), on or off."""
    mode = (value or "auto").strip().lower()
    if mode not in VAE_TILING:
        raise ValueError(f"DESIGNERBOX_VAE_TILING must be one of {', '.join(VAE_TILING)}, not {value!r}")
    return mode


class VAELatents:
    """What the models that sample in a KL autoencoder's latent space share (needs self.vae): sizes,
    encoding a picture (image to image), decoding, and the cheap per-step preview of `latent_family`.

    Large images are decoded in tiles (pipelines/vae_tiling.py: tiles of the VAE config's sample_size,
    512 px for SD 1.x, 1024 for SDXL, overlapping by a quarter and blended, every GroupNorm with the
    whole picture's statistics), one image of a batch at a time, so the decoder's memory is that of
    one tile: `vae_tiling` "auto" (above TILING_PIXELS), "on", "off". A tiled image is close to, not
    equal to, the untiled one; below the threshold nothing changes. Encoding (image to image) is not
    tiled."""

    latent_family = "sd15"
    vae_tiling = "auto"  # the dataclasses below make it a field

    def uses_vae_tiling(self, width: int, height: int) -> bool:
        """Whether an image of width x height goes through the VAE in tiles."""
        return self.vae_tiling == "on" or (self.vae_tiling == "auto" and width * height > TILING_PIXELS)


    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent along a side (8 for SD's and SDXL's VAE)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        """(C, h, w) of the latents of a width x height image; both must be multiples of the VAE's factor."""
        f = self.vae_scale_factor
        if width % f or height % f:
            raise ValueError(f"width and height must be multiples of {f} for this model, got {width}x{height}")
        return (self.latent_channels, height // f, width // f)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], (B, 3, H, W) -> scaled latents (B, C, H/f, W/f): the mean of the encoder's
        distribution (deterministic; the seed's noise is added by the sampler's start)."""
        x = (images * 2 - 1).to(self.vae.device, self.vae.dtype)
        return (self.vae.encode(x).latent_dist.mean.float() - self.vae_shift) * self.vae.config.scaling_factor

    @property
    def vae_shift(self) -> float:
        """The latents' offset (SD3's and FLUX's VAE: shift_factor; none for SD 1.x/2.x/SDXL)."""
        return self.vae.config.get("shift_factor") or 0.0

    def preview(self, denoised: torch.Tensor) -> torch.Tensor:
        """A cheap image of the sampler's current estimate, (B, 3, h, w) in [0, 1] at latent size."""
        return latent_preview(denoised, self.latent_family)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [0, 1], (B, 3, H, W) on the CPU, in the VAE's own dtype (the loader keeps
        a VAE that overflows in float16, SDXL's, in float32)."""
        x = latents.to(self.vae.dtype) / self.vae.config.scaling_factor + self.vae_shift
        f = self.vae_scale_factor
        if self.uses_vae_tiling(x.shape[-1] * f, x.shape[-2] * f):
            from designerbox.pipelines.vae_tiling import decode_tiled

            size = self.vae.config.sample_size
            tile = max(8, (size[0] if isinstance(size, (list, tuple)) else size) // f)  # latents a side (64: SD 1.x)
            images = torch.cat([decode_tiled(self.vae, x[i:i + 1], tile, tile // 4).cpu() for i in range(len(x))])
        else:
            images = self.vae.decode(x).sample.float().cpu()  # (B, 3, H, W) in about [-1, 1]
        return ((images + 1) / 2).clamp(0, 1)


@dataclass
class LatentDiffusion(VAELatents):
    """A Stable Diffusion 1.x model, built by registry.user_checkpoints.load_stable_diffusion.

    unet            UNet2DConditionModel (latent channels in and out, cross-attention on token states)
    vae             AutoencoderKL; its config's scaling_factor scales the latents
    text_encoder    transformers CLIPTextModel
    tokenizer       transformers CLIPTokenizer (77 tokens)
    alphas_cumprod  the DDPM noise table the UNet was trained on, (T,)
    prediction      "eps" or "v"
    embedding_tokens  textual-inversion embeddings given for this request: {name: placeholder ids}
                    (set by pipelines/textual_inversion.set_embeddings)
    vae_tiling      "auto", "on" or "off" (VAELatents)
    """

    unet: nn.Module
    vae: nn.Module
    text_encoder: nn.Module
    tokenizer: object
    alphas_cumprod: torch.Tensor
    prediction: str
    device: torch.device
    dtype: torch.dtype = torch.float32
    embedding_tokens: dict[str, list[int]] = field(default_factory=dict)
    vae_tiling: str = "auto"

    def denoiser(self):
        def net(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
            t = t.expand(x.shape[0]) if t.dim() else t.repeat(x.shape[0])
            return self.unet(x.to(self.dtype), t, encoder_hidden_states=context.to(self.dtype)).sample.float()

        adapter = {"v": DiscreteVDenoiser, "eps": DiscreteEpsDenoiser}[self.prediction]
        return adapter(net, self.alphas_cumprod.to(self.device))

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Token states of the text encoder's last layer, (N, 77 * K, D): A1111 emphasis and BREAK, and
        prompts longer than 75 tokens in K chunks (pipelines/prompt_weights.py)."""
        states, _ = encode_weighted(self.tokenizer, lambda ids: self.text_encoder(ids)[0], prompts, self.device,
                                    self.embedding_tokens)
        return states

    def conditions(self, prompt: str, negative_prompt: str | None, batch: int, width: int, height: int):
        """Token states of the prompt and of the negative prompt (the unconditional branch of CFG)."""
        states = self.encode_prompt([prompt, negative_prompt or ""])  # (2, 77 * K, D)
        return {"context": states[:1].expand(batch, -1, -1)}, {"context": states[1:].expand(batch, -1, -1)}



# Linear maps from a VAE's (scaled) latents to RGB in about [-1, 1], (4, 3): a free preview of the
# denoised estimate at every step, without the decoder (the factors ComfyUI and A1111 use for their
# "cheap" previews, fitted on each VAE's latents of real images).
LATENT_RGB = {
    "sd15": ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177)),
    "sdxl": ((0.3920, 0.4054, 0.4549), (-0.2634, -0.0196, 0.0653), (0.0568, 0.1687, -0.0755), (-0.3112, -0.2359, -0.2076)),
    # the 16-channel VAEs of SD3 and FLUX (16, 3), with an offset each (ComfyUI's latent_formats SD3, Flux)
    "sd3": ((-0.0922, -0.0175, 0.0749), (0.0311, 0.0633, 0.0954), (0.1994, 0.0927, 0.0458), (0.0856, 0.0339, 0.0902),
            (0.0587, 0.0272, -0.0496), (-0.0006, 0.1104, 0.0309), (0.0978, 0.0306, 0.0427), (-0.0042, 0.1038, 0.1358),
            (-0.0194, 0.0020, 0.0669), (-0.0488, 0.0130, -0.0268), (0.0922, 0.0988, 0.0951), (-0.0278, 0.0524, -0.0542),
            (0.0332, 0.0456, 0.0895), (-0.0069, -0.0030, -0.0810), (-0.0596, -0.0465, -0.0293), (-0.1448, -0.1463, -0.1189)),
    "flux": ((-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433), (-0.0174, 0.0160, 0.0617),
             (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115), (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259),
             (-0.0245, 0.0250, 0.1180), (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
             (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499), (-0.1262, -0.0982, -0.0778)),
}
LATENT_RGB_BIAS = {"sd3": (0.2394, 0.2135, 0.1925), "flux": (-0.0329, -0.0718, -0.0851)}


def latent_preview(latents: torch.Tensor, family: str) -> torch.Tensor:
    """Latents (B, C, h, w) -> a rough image (B, 3, h, w) in [0, 1] on the CPU (one small matrix product)."""
    factors = torch.tensor(LATENT_RGB[family], dtype=torch.float32)  # (C, 3)
    rgb = torch.einsum("bchw,cd->bdhw", latents.float().cpu(), factors)
    rgb = rgb + torch.tensor(LATENT_RGB_BIAS.get(family, (0.0, 0.0, 0.0))).view(1, 3, 1, 1)
    return ((rgb + 1) / 2).clamp(0, 1)


@torch.no_grad()
def sd_text_to_image(model: LatentDiffusion, prompt: str, negative_prompt: str | None, *, width: int, height: int,
                     steps: int, sampler: str, schedule: str, cfg_scale: float, seeds: list[int],
                     callback: Callable[[dict], None] | None = None, **image_inputs) -> torch.Tensor:
    """Returns images (B, 3, H, W) in [0, 1] on the CPU, B = len(seeds); image_inputs: init_images,
    strength, mask (pipelines/sampling.draw: image to image and inpainting)."""
    return draw(model, prompt, negative_prompt, width=width, height=height, steps=steps, sampler=sampler,
                schedule=schedule, cfg_scale=cfg_scale, seeds=seeds, callback=callback, **image_inputs)
