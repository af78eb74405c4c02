"""The adapters against networks built analytically from the exact Gaussian denoiser (conftest.py).

Each network computes its target from the definitions of its parametrisation, not from the
adapter's coefficients: eps = (x - x_0) / sigma; v = alpha eps - sigma_vp x_0 (Salimans & Ho 2022);
rectified flow v = eps - x_0 with x_t = (1 - t) x_0 + t eps. x_0 is the exact E[x_0 | x].
"""

from __future__ import annotations

import math

import pytest
import torch

from designerbox.samplers import (
    CFGDenoiser,
    DiscreteEpsDenoiser,
    DiscreteVDenoiser,
    FlowDenoiser,
    make_sigmas,
    sample_dpmpp_2m,
)
from designerbox.samplers.discrete import alphas_cumprod, sigmas_from_alphas_cumprod

SD_TABLE = alphas_cumprod("scaled_linear", 1000, 0.00085, 0.012)  # Stable Diffusion's, sigma 0.029 .. 14.6
COS_TABLE = alphas_cumprod("squaredcos_cap_v2", 1000)  # sigma 0.0064 .. 2e4


def eps_denoiser(gauss) -> DiscreteEpsDenoiser:
    def net(x_in, t):  # x_in = x / sqrt(sigma^2 + 1): the DDPM network's input
        sigma = model.t_to_sigma(t)[:, None]  # (B, 1)
        x = x_in * (sigma**2 + 1).sqrt()
        return (x - gauss.denoise(x, sigma[:, 0])) / sigma  # eps

    model = DiscreteEpsDenoiser(net, SD_TABLE)
    return model


def v_denoiser(gauss) -> DiscreteVDenoiser:
    def net(x_in, t):
        sigma = model.t_to_sigma(t)[:, None]  # (B, 1)
        alpha, sigma_vp = 1 / (sigma**2 + 1).sqrt(), sigma / (sigma**2 + 1).sqrt()  # x_in = alpha x_0 + sigma_vp eps
        x = x_in / alpha
        x_0 = gauss.denoise(x, sigma[:, 0])
        eps = (x - x_0) / sigma
        return alpha * eps - sigma_vp * x_0  # v

    model = DiscreteVDenoiser(net, COS_TABLE)
    return model


def flow_denoiser(gauss, shift=3.0) -> FlowDenoiser:
    def net(x_t, timestep):
        t = (timestep / 1000)[:, None]  # (B, 1)
        x = x_t / (1 - t)  # = x_0 + t / (1 - t) eps
        x_0 = gauss.denoise(x, (t / (1 - t))[:, 0])
        eps = (x_t - (1 - t) * x_0) / t
        return eps - x_0  # velocity

    return FlowDenoiser(net, shift=shift, num_train_timesteps=1000)


ADAPTERS = {"eps": eps_denoiser, "v": v_denoiser, "flow": flow_denoiser}


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_adapter_is_the_exact_denoiser(kind, gauss):
    model = ADAPTERS[kind](gauss)
    x = gauss.noisy(6, 5.0, torch.Generator().manual_seed(0)).reshape(3, 2)  # (3, 2)
    for sigma in (0.05, torch.tensor(1.3, dtype=torch.float64), torch.tensor([0.1, 2.0, 9.0], dtype=torch.float64)):
        torch.testing.assert_close(model(x, sigma), gauss.denoise(x, sigma), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="sigma must be"):
        model(x, torch.ones(2))


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
@pytest.mark.parametrize("schedule", ["karras", "exponential", "simple"])
def test_sampling_through_an_adapter_gives_the_data_moments(kind, schedule, gauss):
    """100 steps: karras over the cosine and flow tables' sigma range (up to 2e4) needs about 80."""
    model = ADAPTERS[kind](gauss)
    sigmas = make_sigmas(schedule, 100, model, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    # 20k samples as 20 rows: the adapters' per-row work on sigma stays small
    x = sample_dpmpp_2m(model, gauss.noisy((20, 1000), sigmas[0].item(), g), sigmas)  # (20, 1000)
    assert abs(x.mean().item() - gauss.mu) < 0.02
    assert abs(x.var().item() - gauss.s**2) < 0.02


@pytest.mark.parametrize("table", [SD_TABLE, COS_TABLE])
def test_discrete_timesteps_follow_the_sigma_table(table):
    model = DiscreteEpsDenoiser(None, table)
    sigmas = sigmas_from_alphas_cumprod(table).float()
    assert model.sigmas.dtype == torch.float32 and torch.equal(model.sigmas, sigmas)
    assert (model.sigma_min, model.sigma_max) == (sigmas[0].item(), sigmas[-1].item())
    k = torch.tensor([0, 1, 500, 998, 999])
    torch.testing.assert_close(model.sigma_to_t(sigmas[k].double()), k.double(), rtol=0, atol=1e-4)
    torch.testing.assert_close(model.t_to_sigma(k), sigmas[k], rtol=1e-6, atol=0)
    t = torch.rand(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 999
    torch.testing.assert_close(model.sigma_to_t(model.t_to_sigma(t)), t, rtol=0, atol=1e-9)
    # log sigma is interpolated linearly between neighbouring timesteps; outside the table t is clamped
    assert model.sigma_to_t(torch.tensor([(sigmas[10] * sigmas[11]).double().sqrt()])).item() == pytest.approx(10.5)
    assert model.sigma_to_t(torch.tensor([1e-5, 1e6])).tolist() == [0.0, 999.0]


def test_flow_table_is_the_shifted_training_grid():
    shift, T = 3.0, 1000
    model = FlowDenoiser(None, shift=shift, num_train_timesteps=T)
    t = torch.arange(1, T, dtype=torch.float64) / T  # the grid below the capped last entry
    shifted = shift * t / (1 + (shift - 1) * t)  # Esser et al. 2024
    torch.testing.assert_close(model.sigma_to_t(model.sigmas[:-1].double()), shifted, rtol=1e-6, atol=0)
    assert model.sigma_min == pytest.approx(shift / (T - 1), rel=1e-6)
    assert model.sigma_max == pytest.approx(shift * (2 * T - 1), rel=1e-6)
    assert bool((model.sigmas.diff() > 0).all())
    with pytest.raises(ValueError):
        FlowDenoiser(None, shift=0.0)


def two_class_denoiser(gauss, calls: list):
    """Exact denoisers of N(0.3, s^2) (label 1) and N(-0.2, s^2) (label 0), chosen per row by `label`."""
    def denoise(x, sigma, *, label, scale=1.0):
        calls.append(x.shape[0])
        mu = torch.where(label == 1, 0.3, -0.2).to(x.dtype)[:, None]  # (B, 1)
        sigma = sigma[:, None]  # (B, 1)
        return scale * (gauss.s**2 * x + sigma**2 * mu) / (gauss.s**2 + sigma**2)

    return denoise


def test_cfg_combines_both_passes_in_one_batched_call(gauss):
    calls = []
    denoise = two_class_denoiser(gauss, calls)
    x = gauss.noisy(8, 3.0, torch.Generator().manual_seed(0)).reshape(4, 2)  # (4, 2)
    sigma = torch.tensor([0.5, 1.0, 3.0, 7.0], dtype=torch.float64)
    cond, uncond = {"label": torch.ones(4), "scale": 1.0}, {"label": torch.zeros(4), "scale": 1.0}
    d_cond, d_uncond = denoise(x, sigma, **cond), denoise(x, sigma, **uncond)
    assert not torch.allclose(d_cond, d_uncond)

    calls.clear()
    torch.testing.assert_close(CFGDenoiser(denoise, 1.0)(x, sigma, cond=cond, uncond=uncond), d_cond)
    assert calls == [4]  # scale 1: the conditional pass only

    calls.clear()
    guided = CFGDenoiser(denoise, 5.0)(x, 2.0, cond=cond, uncond=uncond)  # sigma as a float
    d_cond, d_uncond = denoise(x, torch.full((4,), 2.0), **cond), denoise(x, torch.full((4,), 2.0), **uncond)
    torch.testing.assert_close(guided, d_uncond + 5.0 * (d_cond - d_uncond))
    assert calls[0] == 8  # one call on the batch of uncond and cond

    with pytest.raises(ValueError, match="same keys"):
        CFGDenoiser(denoise, 5.0)(x, sigma, cond=cond, uncond={"label": torch.zeros(4)})
    with pytest.raises(ValueError, match="not a tensor"):
        CFGDenoiser(denoise, 5.0)(x, sigma, cond=cond, uncond={**uncond, "scale": 2.0})


def test_cfg_samples_through_a_sampler(gauss):
    """w = 1 reproduces class 1's moments; w = 2 pushes the mean beyond class 1, away from class 0."""
    denoise = two_class_denoiser(gauss, [])
    sigmas = make_sigmas("karras", 30, eps_denoiser(gauss), dtype=torch.float64)  # any table will do
    args = {"cond": {"label": torch.ones(20)}, "uncond": {"label": torch.zeros(20)}}
    g = torch.Generator().manual_seed(0)
    x_T = math.sqrt(gauss.s**2 + sigmas[0].item() ** 2) * torch.randn(20, 1000, generator=g, dtype=torch.float64)
    x = sample_dpmpp_2m(CFGDenoiser(denoise, 1.0), x_T + 0.3, sigmas, extra_args=args)  # (20, 1000)
    assert abs(x.mean().item() - 0.3) < 0.02 and abs(x.var().item() - gauss.s**2) < 0.02
    x = sample_dpmpp_2m(CFGDenoiser(denoise, 2.0), x_T + 0.3, sigmas, extra_args=args)
    assert x.mean().item() > 0.5  # the unconditional class is at -0.2
