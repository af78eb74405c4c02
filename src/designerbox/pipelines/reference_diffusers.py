"""A reference implementation of text to image that uses only diffusers' own components.

It drives a DesignerBox pixel-space model folder (unet/, scheduler/) with diffusers'
UNet2DConditionModel and a diffusers scheduler, in the denoising loop that diffusers' pipelines
write (StableDiffusionPipeline.__call__, steps 4-7: set_timesteps, latents * init_noise_sigma,
then per timestep scale_model_input, one batched UNet call on [uncond, cond], guidance on the model
output, scheduler.step). diffusers has no pipeline class for a pixel-space UNet conditioned on a
pooled sentence embedding, so this module is that loop, written out.

It is not used to make images. It exists so that tests (tests/test_diffusers_equivalence.py) and the
CPU benchmark (bench/cpu_generate.py) can check our pipeline (pipelines/text_to_image.py with
designerbox.samplers) against diffusers, on the same weights, text embeddings and starting noise.

Conventions that differ from our samplers (measured in the test; none changes the algorithm):
  * DPMSolverMultistepScheduler works in the variance-preserving x_t = alpha x_0 + sigma_vp eps with
    init_noise_sigma = 1; we work in x = x_0 + sigma eps starting from noise * sigma_max. The updates
    are the same DPM-Solver++(2M) (midpoint form, k-diffusion's sample_dpmpp_2m); the starting points
    differ by the factor sigma_max / sqrt(sigma_max^2 + 1), 1 - 1e-8 for the built-in noise tables.
  * Its last step: with final_sigmas_type="zero" (the default) the step to sigma = 0 is first order
    and gives x = D(x), as ours does. lower_order_final (below 15 steps) also forces the step before
    it to at most second order, which with solver_order=2 it already is: no difference at any count.
  * Timesteps: DPMSolverMultistepScheduler computes the continuous timestep of each Karras sigma and
    stores it as int64, which truncates it (it skips .round() for squaredcos_cap_v2), so the UNet sees
    floor(t) while the update uses the exact sigma. EulerDiscreteScheduler and our denoisers pass the
    continuous t (log-sigma interpolation in the table). `continuous_timesteps=True` below passes the
    continuous t to the UNet instead, to show that this is the only difference.
  * EulerDiscreteScheduler takes the Karras range from the sigmas of its timestep_spacing grid: with
    "leading" (DDPMScheduler's default, so the models' scheduler configs) sigma_max is sigma(t=950)
    for 20 steps instead of sigma(t=999), and init_noise_sigma is sqrt(sigma_max^2 + 1). With
    "linspace" it uses the whole table and init_noise_sigma = sigma_max, as k-diffusion and we do, so
    load_diffusers_scheduler sets it.
  * Guidance: diffusers mixes the model outputs (v or eps), we mix the denoised x_0. x_0 is affine in
    the model output with the same x for both branches, so the two are the same.
"""

from __future__ import annotations

from pathlib import Path

import torch

# (sampler, schedule) -> the diffusers scheduler class name and its from_pretrained overrides.
DIFFUSERS_SCHEDULERS = {
    ("dpmpp_2m", "karras"): ("DPMSolverMultistepScheduler",
                             dict(algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True)),
    ("euler", "karras"): ("EulerDiscreteScheduler", dict(use_karras_sigmas=True, timestep_spacing="linspace")),
    ("dpmpp_2m", "exponential"): ("DPMSolverMultistepScheduler",
                                  dict(algorithm_type="dpmsolver++", solver_order=2, use_exponential_sigmas=True)),
    ("euler", "exponential"): ("EulerDiscreteScheduler",
                               dict(use_exponential_sigmas=True, timestep_spacing="linspace")),
}


def load_diffusers_unet(model_dir: str | Path, dtype: torch.dtype = torch.float32):
    """diffusers' own loader on the model folder's unet/ (reads the safetensors file, no download)."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(model_dir), subfolder="unet", torch_dtype=dtype)
    return unet.eval().requires_grad_(False)


def load_diffusers_scheduler(model_dir: str | Path, sampler: str, schedule: str, **overrides):
    """The diffusers scheduler that runs our (sampler, schedule), built from the folder's scheduler config."""
    import diffusers

    if (sampler, schedule) not in DIFFUSERS_SCHEDULERS:
        raise ValueError(f"no diffusers reference for sampler {sampler!r} with schedule {schedule!r}; "
                         f"have: {', '.join('/'.join(k) for k in DIFFUSERS_SCHEDULERS)}")
    name, kwargs = DIFFUSERS_SCHEDULERS[(sampler, schedule)]
    cls = getattr(diffusers, name)
    return cls.from_pretrained(str(model_dir), subfolder="scheduler", **(kwargs | overrides))


def _continuous_timestep(scheduler, sigma: torch.Tensor) -> torch.Tensor:
    """The timestep of sigma by linear interpolation of log sigma in the scheduler's table (what
    EulerDiscreteScheduler._sigma_to_t computes before any rounding)."""
    ab = scheduler.alphas_cumprod.to(torch.float64)
    log_sigmas = ((1 - ab) / ab).sqrt().log()  # (T,) ascending
    log_sigma = sigma.to(torch.float64).log()
    high = torch.searchsorted(log_sigmas, log_sigma).clamp(1, len(log_sigmas) - 1)
    w = ((log_sigma - log_sigmas[high - 1]) / (log_sigmas[high] - log_sigmas[high - 1])).clamp(0, 1)
    return (high - 1 + w).float()


@torch.no_grad()
def diffusers_text_to_image(unet, scheduler, noise: torch.Tensor, cond_pooled: torch.Tensor,
                            uncond_pooled: torch.Tensor, *, steps: int, cfg_scale: float,
                            continuous_timesteps: bool = False, cond_tokens: tuple | None = None,
                            uncond_tokens: tuple | None = None) -> torch.Tensor:
    """diffusers' denoising loop for a pixel-space model conditioned on a pooled text embedding.

    noise           unit Gaussian noise (B, 3, H, W), e.g. pipelines.text_to_image.initial_noise(seeds, ...)
    cond_pooled     (B, 384) or (1, 384) pooled embedding of the prompt; uncond_pooled likewise, of the
                    negative prompt
    cond_tokens     for a network with cross-attention (dbx-base-v2): (token states (1, T, 384), mask
                    (1, T)) of the prompt, as PixelDiffusion.conditions pads them; uncond_tokens likewise
    Returns images (B, 3, H, W) in [0, 1] on the CPU, like pipelines.text_to_image.text_to_image.
    """
    device, dtype = unet.device, unet.dtype
    batch = noise.shape[0]
    # StableDiffusionPipeline step 3: prompt embeddings, [negative, positive] for guidance
    pooled = torch.cat([uncond_pooled.expand(batch, -1), cond_pooled.expand(batch, -1)]).to(device, dtype)  # (2B, 384)
    if cond_tokens is None:  # the pooled embedding is also the one-token cross-attention context
        context, mask = pooled[:, None], None
    else:
        context = torch.cat([uncond_tokens[0].expand(batch, -1, -1), cond_tokens[0].expand(batch, -1, -1)]).to(device, dtype)
        mask = torch.cat([uncond_tokens[1].expand(batch, -1), cond_tokens[1].expand(batch, -1)]).to(device, dtype)
    # step 4: timesteps
    scheduler.set_timesteps(steps, device=device)
    # Text to image starts at the first sigma. diffusers' pipelines leave the start to
    # index_for_timestep, which picks the *second* match of a repeated first timestep (meant for
    # img2img) and then runs off the end of the sigmas: with squaredcos_cap_v2 and Karras sigmas the
    # first timesteps truncate to the same int (998 x8 at 20 steps), an IndexError in diffusers 0.42
    # (huggingface/diffusers#12771, open). set_begin_index(0), as the img2img pipelines call it, avoids it.
    scheduler.set_begin_index(0)
    # step 5: latents = randn * init_noise_sigma (prepare_latents)
    latents = noise.to(device, torch.float32) * scheduler.init_noise_sigma
    # step 7: the denoising loop
    for i, t in enumerate(scheduler.timesteps):
        latent_model_input = torch.cat([latents] * 2)  # (2B, 3, H, W)
        latent_model_input = scheduler.scale_model_input(latent_model_input, t)
        t_in = _continuous_timestep(scheduler, scheduler.sigmas[i]) if continuous_timesteps else t
        # our models take the pooled embedding as class embedding, and the token states (or the pooled
        # embedding as one token) as the cross-attention context
        model_output = unet(latent_model_input.to(dtype), t_in, encoder_hidden_states=context,
                            class_labels=pooled, encoder_attention_mask=mask).sample.float()
        out_uncond, out_cond = model_output.chunk(2)
        model_output = out_uncond + cfg_scale * (out_cond - out_uncond)
        latents = scheduler.step(model_output, t, latents).prev_sample
    # the VAE decode of latent pipelines is the identity here: pixels in [-1, 1] -> [0, 1]
    return ((latents.float().cpu() + 1) / 2).clamp(0, 1)
