"""Adapters that turn a trained network into a denoiser D(x, sigma, **cond) -> denoised.

The samplers work in the variance-exploding view of Karras et al. 2022 (eq. 1-4): x = x_0 + sigma * eps,
and D(x, sigma) estimates x_0 = E[x_0 | x]. A network trained with another parametrisation is wrapped
in the preconditioning of Karras et al. 2022, eq. 7: D(x, sigma) = c_skip x + c_out F(c_in x, c_noise).

sigma may be a python float, a 0-d tensor or a per-batch (B,) tensor; it is used as a (B,) tensor in
x's precision (at least float32) and broadcast over the other dimensions of x.
Each adapter exposes its table `sigmas` (ascending) and `sigma_min`, `sigma_max` for the schedules.
"""

from __future__ import annotations

import torch
from torch import nn

from designerbox.samplers.discrete import sigmas_from_alphas_cumprod


def batch_sigma(sigma, x: torch.Tensor) -> torch.Tensor:
    """sigma as a (B,) tensor on x's device, in x's dtype promoted to at least float32."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    sigma = torch.as_tensor(sigma, dtype=dtype, device=x.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])  # (B,)
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a float, a 0-d or a ({x.shape[0]},) tensor, got shape {tuple(sigma.shape)}")
    return sigma


def append_dims(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A (B,) coefficient as (B, 1, ..., 1) in x's dtype, to broadcast against x."""
    return c.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)


class _DiscreteDenoiser(nn.Module):
    """A network trained on DDPM timesteps t = 0..T-1 (k-diffusion's DiscreteSchedule).

    Its input is the variance-preserving x_t = sqrt(ab_t) (x_0 + sigma_t eps) = c_in x with
    c_in = 1/sqrt(sigma^2 + 1); the timestep is continuous, interpolated linearly in log sigma.
    """

    def __init__(self, net, alphas_cumprod: torch.Tensor):
        super().__init__()
        self.net = net
        sigmas = sigmas_from_alphas_cumprod(torch.as_tensor(alphas_cumprod, dtype=torch.float64))  # (T,)
        self.register_buffer("sigmas", sigmas.float(), persistent=False)  # (T,) ascending
        self.register_buffer("log_sigmas", sigmas.log().float(), persistent=False)  # (T,)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Continuous timestep in [0, T-1]: linear interpolation of log sigma in the table (clamped)."""
        log_sigmas = self.log_sigmas.to(device=sigma.device, dtype=sigma.dtype)  # (T,)
        log_sigma = sigma.log().reshape(-1)  # (N,)
        high = torch.searchsorted(log_sigmas, log_sigma).clamp(1, len(log_sigmas) - 1)  # (N,)
        low = high - 1
        w = ((log_sigma - log_sigmas[low]) / (log_sigmas[high] - log_sigmas[low])).clamp(0, 1)  # (N,)
        return (low + w).reshape(sigma.shape)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """The inverse of sigma_to_t for t in [0, T-1]."""
        t = torch.as_tensor(t)
        t = t.to(torch.promote_types(t.dtype, torch.float32))
        log_sigmas = self.log_sigmas.to(device=t.device, dtype=t.dtype)  # (T,)
        low = t.floor().long().clamp(0, len(log_sigmas) - 2)
        w = t - low
        return ((1 - w) * log_sigmas[low] + w * log_sigmas[low + 1]).exp()

    def model_output(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        c_in = 1 / (sigma**2 + 1).sqrt()  # (B,)
        return self.net(x * append_dims(c_in, x), self.sigma_to_t(sigma), **cond)


class DiscreteEpsDenoiser(_DiscreteDenoiser):
    """An eps-prediction DDPM network (Ho et al. 2020; k-diffusion's CompVisDenoiser): D = x - sigma eps."""

    def forward(self, x: torch.Tensor, sigma, **cond) -> torch.Tensor:
        sigma = batch_sigma(sigma, x)  # (B,)
        eps = self.model_output(x, sigma, **cond)  # like x
        return x - append_dims(sigma, x) * eps


class DiscreteVDenoiser(_DiscreteDenoiser):
    """A v-prediction DDPM network (Salimans & Ho 2022, v = alpha eps - sigma_vp x_0; CompVisVDenoiser).

    With alpha = c_in and sigma_vp = sigma c_in: x_0 = alpha x_t - sigma_vp v = c_skip x + c_out v."""

    def forward(self, x: torch.Tensor, sigma, **cond) -> torch.Tensor:
        sigma = batch_sigma(sigma, x)  # (B,)
        c_skip = 1 / (sigma**2 + 1)  # (B,)
        c_out = -sigma / (sigma**2 + 1).sqrt()  # (B,)
        v = self.model_output(x, sigma, **cond)  # like x
        return x * append_dims(c_skip, x) + v * append_dims(c_out, x)


class FlowDenoiser(nn.Module):
    """A rectified-flow network (Liu et al. 2022; SD3, Esser et al. 2024; FLUX).

    The network sees x_t = (1 - t) x_0 + t eps at timestep t * num_train_timesteps and predicts the
    velocity v = eps - x_0. Dividing by (1 - t) gives the VE view x = x_t / (1 - t) = x_0 + sigma eps with
    sigma = t / (1 - t), so t = sigma / (1 + sigma), x_t = x / (1 + sigma) and D = x_t - t v.

    The shift of SD3 (Esser et al. 2024, t' = shift t / (1 + (shift - 1) t)) only moves which
    noise levels a schedule visits; the network is always called with the true t of its input. In
    sigma it is a plain scaling, sigma' = shift * sigma, so the table is shift * sigma(t_i) for the
    training grid t_i = i / T, i = 1..T, whose last entry (t = 1, sigma = inf) is capped halfway to 1,
    at t = 1 - 1/(2T) (sigma = 2T - 1 before the shift). Sampling from noise * sigma_max then
    misses a fraction 1/(2T) of x_0 in x_t, far below what the network can resolve.
    """

    def __init__(self, net, shift: float = 1.0, num_train_timesteps: int = 1000):
        super().__init__()
        if shift <= 0 or num_train_timesteps < 2:
            raise ValueError(f"need shift > 0 and num_train_timesteps >= 2, got {shift} and {num_train_timesteps}")
        self.net = net
        self.shift = shift
        self.num_train_timesteps = num_train_timesteps
        T = num_train_timesteps
        t = torch.arange(1, T + 1, dtype=torch.float64) / T  # (T,)
        t[-1] = 1 - 1 / (2 * T)
        self.register_buffer("sigmas", (shift * t / (1 - t)).float(), persistent=False)  # (T,) ascending

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    @staticmethod
    def sigma_to_t(sigma: torch.Tensor) -> torch.Tensor:
        return sigma / (1 + sigma)

    @staticmethod
    def t_to_sigma(t: torch.Tensor) -> torch.Tensor:
        return t / (1 - t)

    def forward(self, x: torch.Tensor, sigma, **cond) -> torch.Tensor:
        sigma = batch_sigma(sigma, x)  # (B,)
        t = self.sigma_to_t(sigma)  # (B,) in [0, 1)
        x_t = x / append_dims(1 + sigma, x)  # like x
        v = self.net(x_t, t * self.num_train_timesteps, **cond)  # like x
        return x_t - append_dims(t, x) * v


class CFGDenoiser(nn.Module):
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6 in x_0 form, cfg_scale = their w + 1):
    D = D_u + cfg_scale (D_c - D_u).

    The unconditional and conditional passes share one batched call: x, sigma and every tensor of the
    two condition dicts are concatenated along dim 0 (uncond first); other values must be equal in both.
    """

    def __init__(self, denoiser, cfg_scale: float):
        super().__init__()
        self.denoiser = denoiser
        self.cfg_scale = cfg_scale

    def forward(self, x: torch.Tensor, sigma, cond: dict, uncond: dict) -> torch.Tensor:
        if self.cfg_scale == 1:
            return self.denoiser(x, sigma, **cond)
        if cond.keys() != uncond.keys():
            raise ValueError(f"cond and uncond need the same keys, got {sorted(cond)} and {sorted(uncond)}")
        both = {}
        for key in cond:
            u, c = uncond[key], cond[key]
            if isinstance(c, torch.Tensor):
                both[key] = torch.cat([u, c])  # (2B, ...)
            elif u == c:
                both[key] = c
            else:
                raise ValueError(f"cond[{key!r}] is not a tensor and differs from uncond[{key!r}]")
        sigma = batch_sigma(sigma, x)  # (B,)
        denoised = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), **both)  # (2B, ...)
        d_uncond, d_cond = denoised.chunk(2)
        return d_uncond + self.cfg_scale * (d_cond - d_uncond)


class MaskedDenoiser(nn.Module):
    """Inpainting with any denoiser: inside the mask (1 = repaint) the model's estimate, outside it the
    known clean image, D' = m D + (1 - m) x0. Every sampler then keeps the known region on its path
    (at sigma -> 0 it is x0 exactly) while the masked part is drawn to fit it. Wraps the guided
    denoiser, so mask and x0 have the batch of x: (B, 1, h, w) and (B, C, h, w)."""

    def __init__(self, denoiser, x0: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        self.denoiser, self.x0, self.mask = denoiser, x0, mask

    def forward(self, x: torch.Tensor, sigma, **kwargs) -> torch.Tensor:
        return self.mask * self.denoiser(x, sigma, **kwargs) + (1 - self.mask) * self.x0
