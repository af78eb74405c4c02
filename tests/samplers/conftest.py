"""A Gaussian data distribution, whose exact denoiser and probability-flow ODE solution are known.

x_0 ~ N(mu, s^2) per dimension, so x = x_0 + sigma eps ~ N(mu, s^2 + sigma^2) and
E[x_0 | x] = (s^2 x + sigma^2 mu) / (s^2 + sigma^2). The ODE dx/dsigma = (x - D) / sigma moves
x - mu proportionally to sqrt(s^2 + sigma^2), so x(0) = mu + (x_T - mu) s / sqrt(s^2 + sigma_max^2).
"""

from __future__ import annotations

import math

import pytest
import torch


class Gaussian:
    def __init__(self, mu: float = 0.3, s: float = 0.5):
        self.mu, self.s = mu, s

    def denoise(self, x: torch.Tensor, sigma, **_) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        sigma = sigma.reshape(-1, *([1] * (x.ndim - 1))) if sigma.ndim else sigma  # (B, 1, ...) or ()
        return (self.s**2 * x + sigma**2 * self.mu) / (self.s**2 + sigma**2)

    def noisy(self, shape: int | tuple, sigma: float, generator: torch.Generator) -> torch.Tensor:
        """Samples of the exact marginal at sigma in float64, shape (n, 1) for an int n."""
        shape = (shape, 1) if isinstance(shape, int) else shape
        std = math.sqrt(self.s**2 + sigma**2)
        return self.mu + std * torch.randn(shape, generator=generator, dtype=torch.float64)  # shape

    def ode_solution(self, x_T: torch.Tensor, sigma_max: float) -> torch.Tensor:
        return self.mu + (x_T - self.mu) * self.s / math.sqrt(self.s**2 + sigma_max**2)


@pytest.fixture
def gauss() -> Gaussian:
    return Gaussian()
