"""Stateless samplers that integrate from noise to data through a denoiser (k-diffusion style).

One signature for all:  sample_NAME(model, x, sigmas, *, extra_args=None, callback=None, generator=None) -> x
  model      a denoiser D(x, sigma, **extra_args) -> denoised, sigma a (B,) tensor (see denoisers.py)
  x          the starting point, noise * sigmas[0]
  sigmas     descending noise levels ending in 0 (see schedules.py)
  callback   called after each step with {"i", "x", "sigma", "sigma_next", "denoised"}; it may raise
             to cancel the run (the exception propagates)
  generator  the torch.Generator that draws all fresh noise, so that a seed reproduces a run exactly

They integrate the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma (Karras et al. 2022, eq. 1 with
the score of eq. 3 and sigma(t) = t), or a reverse SDE, in the variance-exploding view x = x_0 + sigma * eps.
Step sizes are computed from the sigmas as python floats (in float64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def _denoise(model, x: torch.Tensor, sigma: float, extra_args: dict) -> torch.Tensor:
    s = torch.full((x.shape[0],), sigma, dtype=torch.promote_types(x.dtype, torch.float32), device=x.device)  # (B,)
    return model(x, s, **extra_args)


def _noise(x: torch.Tensor, generator) -> torch.Tensor:
    """Fresh noise like x. generator: a torch.Generator, None, or a list of (generator, rows) pairs whose
    rows add up to x's batch: each group of rows draws from its own generator, as it would alone (the
    server batches several jobs into one call and each job keeps its own noise)."""
    if isinstance(generator, (list, tuple)):
        if sum(rows for _, rows in generator) != x.shape[0]:
            raise ValueError(f"generator groups cover {sum(r for _, r in generator)} rows, x has {x.shape[0]}")
        return torch.cat([_noise(x[:rows], g) for g, rows in generator])  # shapes only: x[:rows] is not read
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device).to(x.device)  # like x


def _levels(sigmas: torch.Tensor) -> list[float]:
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError(f"sigmas must be 1-D with at least 2 entries (the last 0), got shape {tuple(sigmas.shape)}")
    return [float(s) for s in sigmas]


def _report(callback, i, x, sigma, sigma_next, denoised) -> None:
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "sigma_next": sigma_next, "denoised": denoised})


def get_ancestral_step(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """Split the step sigma -> sigma_next into a deterministic step to sigma_down and fresh noise sigma_up,
    sigma_down^2 + sigma_up^2 = sigma_next^2. eta = 1 is DDPM's posterior variance (Ho et al. 2020)."""
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    if sigma_next == 0 or eta == 0:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    sigma_down = math.sqrt(sigma_next**2 - sigma_up**2)
    return sigma_down, sigma_up


@torch.no_grad()
def sample_euler(model, x, sigmas, *, extra_args=None, callback=None, generator=None):
    """Euler's method on the probability-flow ODE (Karras et al. 2022, alg. 2 without churn)."""
    extra_args = extra_args or {}
    levels = _levels(sigmas)
    for i, (sigma, sigma_next) in enumerate(zip(levels[:-1], levels[1:])):
        denoised = _denoise(model, x, sigma, extra_args)
        d = (x - denoised) / sigma  # dx/dsigma
        x = x + d * (sigma_next - sigma)
        _report(callback, i, x, sigma, sigma_next, denoised)
    return x


@torch.no_grad()
def sample_euler_ancestral(model, x, sigmas, *, extra_args=None, callback=None, generator=None, eta=1.0):
    """Ancestral sampling: an Euler step down to sigma_down, then fresh noise of std sigma_up."""
    extra_args = extra_args or {}
    levels = _levels(sigmas)
    for i, (sigma, sigma_next) in enumerate(zip(levels[:-1], levels[1:])):
        denoised = _denoise(model, x, sigma, extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigma, sigma_next, eta)
        d = (x - denoised) / sigma
        x = x + d * (sigma_down - sigma)
        if sigma_up > 0:
            x = x + _noise(x, generator) * sigma_up
        _report(callback, i, x, sigma, sigma_next, denoised)
    return x


@torch.no_grad()
def sample_heun(model, x, sigmas, *, extra_args=None, callback=None, generator=None):
    """Heun's 2nd-order method (Karras et al. 2022, alg. 1): an Euler step, then the trapezoidal rule with
    the slope at its end; the step to sigma = 0 stays Euler (the slope there is undefined)."""
    extra_args = extra_args or {}
    levels = _levels(sigmas)
    for i, (sigma, sigma_next) in enumerate(zip(levels[:-1], levels[1:])):
        denoised = _denoise(model, x, sigma, extra_args)
        d = (x - denoised) / sigma
        dt = sigma_next - sigma
        if sigma_next == 0:
            x = x + d * dt
        else:
            x_next = x + d * dt
            d_next = (x_next - _denoise(model, x_next, sigma_next, extra_args)) / sigma_next
            x = x + (d + d_next) / 2 * dt  # the trapezoidal rule
        _report(callback, i, x, sigma, sigma_next, denoised)
    return x


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, *, extra_args=None, callback=None, generator=None):
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", alg. 2): a multistep 2nd-order exponential
    integrator in lambda = -log sigma on the data prediction; the first and the last step are 1st order."""
    extra_args = extra_args or {}
    levels = _levels(sigmas)
    old_denoised, h_last = None, None
    for i, (sigma, sigma_next) in enumerate(zip(levels[:-1], levels[1:])):
        denoised = _denoise(model, x, sigma, extra_args)
        if sigma_next == 0:
            x = denoised  # the exact limit of the update as h -> inf
        else:
            h = math.log(sigma / sigma_next)  # lambda_next - lambda
            if old_denoised is None:
                denoised_d = denoised  # DPM-Solver++(1) = DDIM
            else:
                r = h_last / h
                denoised_d = (1 + 1 / (2 * r)) * denoised - 1 / (2 * r) * old_denoised  # alg. 2, D_i
            x = (sigma_next / sigma) * x - math.expm1(-h) * denoised_d
            h_last = h
        old_denoised = denoised
        _report(callback, i, x, sigma, sigma_next, denoised)
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(model, x, sigmas, *, extra_args=None, callback=None, generator=None, eta=1.0):
    """SDE-DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++"), k-diffusion's "midpoint" variant: the
    reverse SDE's linear part solved exactly over h = lambda_next - lambda (lambda = -log sigma), with
    fresh Gaussian noise for eta * h of the step, plus a correction from the previous denoised.
    eta = 0 gives DPM-Solver++(2M)."""
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    extra_args = extra_args or {}
    levels = _levels(sigmas)
    old_denoised, h_last = None, None
    for i, (sigma, sigma_next) in enumerate(zip(levels[:-1], levels[1:])):
        denoised = _denoise(model, x, sigma, extra_args)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma / sigma_next)
            eta_h = eta * h
            x = (sigma_next / sigma) * math.exp(-eta_h) * x - math.expm1(-h - eta_h) * denoised
            if old_denoised is not None:
                r = h_last / h
                x = x - 0.5 * math.expm1(-h - eta_h) / r * (denoised - old_denoised)  # midpoint
            if eta_h > 0:
                x = x + _noise(x, generator) * (sigma_next * math.sqrt(-math.expm1(-2 * eta_h)))
            h_last = h
        old_denoised = denoised
        _report(callback, i, x, sigma, sigma_next, denoised)
    return x


@torch.no_grad()
def sample_ddim(model, x, sigmas, *, extra_args=None, callback=None, generator=None, eta=0.0):
    """DDIM (Song et al. 2021, eq. 12) in sigma coordinates. Dividing eq. 12 by sqrt(ab_next), with
    sigma^2 = (1 - ab) / ab: x_next = x_0 + sqrt(sigma_next^2 - sigma_up^2) eps + sigma_up z, where
    sigma_up = eta sigma_next sqrt(1 - sigma_next^2 / sigma^2) is eq. 16's sigma_t(eta) / sqrt(ab_next).
    eta = 0 is deterministic and the same step as Euler (as Karras et al. 2022 note); eta = 1 is the
    ancestral step of sample_euler_ancestral."""
    extra_args = extra_args or {}
    levels = _levels(sigmas)
    for i, (sigma, sigma_next) in enumerate(zip(levels[:-1], levels[1:])):
        denoised = _denoise(model, x, sigma, extra_args)  # x_0 prediction
        eps = (x - denoised) / sigma  # eps prediction
        sigma_down, sigma_up = get_ancestral_step(sigma, sigma_next, eta)
        x = denoised + sigma_down * eps  # "direction pointing to x_t"
        if sigma_up > 0:
            x = x + _noise(x, generator) * sigma_up  # random noise
        _report(callback, i, x, sigma, sigma_next, denoised)
    return x


@dataclass(frozen=True)
class SamplerInfo:
    description: str
    stochastic: bool
    order: int  # of the deterministic (ODE) part; stochastic samplers converge weakly


SAMPLERS = {
    "euler": sample_euler,
    "euler_a": sample_euler_ancestral,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "ddim": sample_ddim,
}

SAMPLER_INFO = {
    "euler": SamplerInfo("Euler on the probability-flow ODE; 1 model call per step", False, 1),
    "euler_a": SamplerInfo("Euler ancestral: Euler step plus fresh noise; 1 call per step", True, 1),
    "heun": SamplerInfo("Heun (Karras et al. 2022); 2 calls per step, sharp at few steps", False, 2),
    "dpmpp_2m": SamplerInfo("DPM-Solver++(2M) multistep; 1 call per step, a good default", False, 2),
    "dpmpp_2m_sde": SamplerInfo("DPM-Solver++(2M) SDE; 1 call per step, more detail, needs more steps", True, 2),
    "ddim": SamplerInfo("DDIM (Song et al. 2021), deterministic at eta 0; 1 call per step", False, 1),
}


def get_sampler(name: str):
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
