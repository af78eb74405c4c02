"""Noise schedules: the descending sigmas a sampler steps through, with a final 0 appended.

Every schedule returns a 1-D tensor of length n + 1: n noise levels sigma_0 > ... > sigma_{n-1} > 0
followed by sigma_n = 0, in the variance-exploding view x = x_0 + sigma * eps (Karras et al. 2022).
Values are computed in float64 and returned in `dtype` on `device`.
"""

from __future__ import annotations

import math

import torch


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])  # (n + 1,)


def _check(n: int, sigma_min: float, sigma_max: float) -> None:
    if n < 1:
        raise ValueError(f"the number of steps must be at least 1, got {n}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min} and {sigma_max}")


def get_sigmas_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, *,
                      dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """Karras et al. 2022, eq. 5: sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho.

    rho = 7 spends more steps at low noise; rho = 1 is uniform in sigma."""
    _check(n, sigma_min, sigma_max)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)  # (n,)
    max_inv_rho, min_inv_rho = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho  # (n,)
    return _append_zero(sigmas).to(device=device, dtype=dtype)


def get_sigmas_exponential(n: int, sigma_min: float, sigma_max: float, *,
                           dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """Uniform in log sigma (i.e. in lambda = -log sigma, the half log-SNR of Lu et al. 2022)."""
    _check(n, sigma_min, sigma_max)
    sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64).exp()  # (n,)
    return _append_zero(sigmas).to(device=device, dtype=dtype)


def get_sigmas_simple(n: int, model_sigmas: torch.Tensor, *,
                      dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """ComfyUI's "simple": n entries of the model's ascending table of T sigmas at evenly spaced
    indices T-1 - floor(i T / n), i = 0..n-1, starting from the largest, then 0."""
    table = torch.as_tensor(model_sigmas).flatten()
    if not 1 <= n <= table.numel():
        raise ValueError(f"the simple schedule needs 1 <= n <= {table.numel()} (the table's length), got {n}")
    stride = table.numel() / n
    index = torch.tensor([table.numel() - 1 - int(i * stride) for i in range(n)])  # (n,) descending
    return _append_zero(table[index].to(torch.float64)).to(device=device, dtype=dtype)


SCHEDULES = {
    "karras": get_sigmas_karras,
    "exponential": get_sigmas_exponential,
    "simple": get_sigmas_simple,
}


def make_sigmas(schedule: str, n: int, denoiser, *, dtype: torch.dtype = torch.float32,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """The named schedule for a denoiser exposing `sigma_min`, `sigma_max` and its table `sigmas`."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if schedule == "simple":
        return get_sigmas_simple(n, denoiser.sigmas, dtype=dtype, device=device)
    return SCHEDULES[schedule](n, float(denoiser.sigma_min), float(denoiser.sigma_max), dtype=dtype, device=device)
