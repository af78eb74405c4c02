"""Discrete-time (DDPM) noise tables, as trained networks and diffusers' schedulers define them.

A DDPM network is trained on timesteps t = 0..T-1 with x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps,
where ab_t = prod_{s<=t} (1 - beta_s). In the variance-exploding view the samplers use,
x_t / sqrt(ab_t) = x_0 + sigma_t eps with sigma_t = sqrt((1 - ab_t) / ab_t) (Karras et al. 2022, eq. 4).
"""

from __future__ import annotations

import math

import torch

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def alphas_cumprod(beta_schedule: str = "squaredcos_cap_v2", num_train_timesteps: int = 1000,
                   beta_start: float = 0.0001, beta_end: float = 0.02) -> torch.Tensor:
    """ab_t for t = 0..T-1 in float64, matching diffusers' DDPMScheduler for the same config."""
    n = num_train_timesteps
    if beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float64)
    elif beta_schedule == "scaled_linear":  # Stable Diffusion
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float64) ** 2
    elif beta_schedule == "squaredcos_cap_v2":  # Nichol & Dhariwal 2021, eq. 17, betas capped at 0.999
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = torch.tensor([min(1 - f((i + 1) / n) / f(i / n), 0.999) for i in range(n)], dtype=torch.float64)
    else:
        raise ValueError(f"unknown beta_schedule {beta_schedule!r}; valid: {', '.join(BETA_SCHEDULES)}")
    return torch.cumprod(1.0 - betas, dim=0)


def sigmas_from_alphas_cumprod(ab: torch.Tensor) -> torch.Tensor:
    return ((1 - ab) / ab).sqrt()
