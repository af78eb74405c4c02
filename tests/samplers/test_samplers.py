"""Every sampler against the exact Gaussian denoiser (conftest.py): moments, convergence order, seeds."""

from __future__ import annotations

import math

import pytest
import torch

from designerbox.samplers import SAMPLER_INFO, SAMPLERS, get_sampler, get_sigmas_karras

SIGMA_MIN, SIGMA_MAX = 0.002, 20.0
# enough steps for each sampler's bias in the variance to stay well inside the tolerance below
MOMENT_STEPS = {"euler": 200, "ddim": 200, "heun": 50, "dpmpp_2m": 50, "euler_a": 400, "dpmpp_2m_sde": 100}


def karras(n: int) -> torch.Tensor:
    return get_sigmas_karras(n, SIGMA_MIN, SIGMA_MAX, dtype=torch.float64)


def test_registry_is_complete():
    assert set(SAMPLERS) == set(SAMPLER_INFO) == set(MOMENT_STEPS)
    assert {n for n, info in SAMPLER_INFO.items() if info.stochastic} == {"euler_a", "dpmpp_2m_sde"}
    assert get_sampler("heun") is SAMPLERS["heun"]
    with pytest.raises(ValueError, match=r"unknown sampler 'lms'; valid: euler, euler_a, heun"):
        get_sampler("lms")


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samples_have_the_data_moments(name, gauss):
    g = torch.Generator().manual_seed(1)
    x = gauss.noisy(20_000, SIGMA_MAX, g)  # (N, 1), the exact marginal at sigma_max
    x = SAMPLERS[name](gauss.denoise, x, karras(MOMENT_STEPS[name]), generator=g)
    assert x.shape == (20_000, 1) and x.dtype == torch.float64
    assert abs(x.mean().item() - gauss.mu) < 0.02  # standard error 0.0035
    assert abs(x.var().item() - gauss.s**2) < 0.02  # standard error 0.0025, s^2 = 0.25


def observed_orders(name, gauss, steps=(16, 32, 64)) -> list[float]:
    """log2(err_N / err_2N) of the final x against the exact ODE solution x(0)."""
    x_T = gauss.noisy(64, SIGMA_MAX, torch.Generator().manual_seed(0))  # (64, 1)
    exact = gauss.ode_solution(x_T, SIGMA_MAX)
    errors = [(SAMPLERS[name](gauss.denoise, x_T, karras(n)) - exact).abs().max().item() for n in steps]
    return [math.log2(a / b) for a, b in zip(errors, errors[1:])]


@pytest.mark.parametrize("name", ["euler", "ddim", "heun", "dpmpp_2m"])
def test_deterministic_samplers_converge_at_their_order(name, gauss):
    order = SAMPLER_INFO[name].order
    orders = observed_orders(name, gauss)  # measured: euler, ddim 0.99, 1.00; heun 2.18, 2.09; dpmpp_2m 2.26, 2.14
    for p in orders:
        assert order - 0.2 < p < order + 0.5, orders


@pytest.mark.parametrize("name", ["euler_a", "dpmpp_2m_sde"])
def test_stochastic_samplers_converge_weakly(name, gauss):
    """The error of the sample variance falls as the steps double (weak convergence)."""
    errors = []
    for n in (8, 16, 32, 64):
        g = torch.Generator().manual_seed(2)
        # 50k samples in two batches: tensors under torch's 32k-element grain stay single-threaded
        x = torch.cat([SAMPLERS[name](gauss.denoise, gauss.noisy(25_000, SIGMA_MAX, g), karras(n), generator=g)
                       for _ in range(2)])  # (50_000, 1)
        errors.append(abs(x.var().item() - gauss.s**2))  # standard error of var: 0.0016
    # measured: euler_a 0.158, 0.105, 0.062, 0.033; dpmpp_2m_sde 0.090, 0.057, 0.012, 0.003
    assert all(b < 0.8 * a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.25 * errors[0], errors


def test_deterministic_samplers_ignore_the_generator(gauss):
    x_T = gauss.noisy(8, SIGMA_MAX, torch.Generator().manual_seed(0))
    for name, info in SAMPLER_INFO.items():
        if not info.stochastic:
            a = SAMPLERS[name](gauss.denoise, x_T, karras(5), generator=torch.Generator().manual_seed(1))
            b = SAMPLERS[name](gauss.denoise, x_T, karras(5), generator=torch.Generator().manual_seed(2))
            assert torch.equal(a, b), name


@pytest.mark.parametrize("name", ["euler_a", "dpmpp_2m_sde"])
def test_a_seed_reproduces_a_stochastic_run_exactly(name, gauss):
    x_T = gauss.noisy(256, SIGMA_MAX, torch.Generator().manual_seed(0))

    def run(seed):
        return SAMPLERS[name](gauss.denoise, x_T, karras(10), generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(7), run(7))
    assert not torch.allclose(run(7), run(8))


def test_ddim_is_euler_at_eta_0_and_euler_ancestral_at_eta_1(gauss):
    """In sigma coordinates DDIM's eq. 12 is the ancestral step (Karras et al. 2022, sec. 4)."""
    x_T = gauss.noisy(256, SIGMA_MAX, torch.Generator().manual_seed(0))
    sigmas = karras(12)
    ddim = SAMPLERS["ddim"](gauss.denoise, x_T, sigmas)
    euler = SAMPLERS["euler"](gauss.denoise, x_T, sigmas)
    torch.testing.assert_close(ddim, euler, rtol=0, atol=1e-12)
    ddim = SAMPLERS["ddim"](gauss.denoise, x_T, sigmas, eta=1.0, generator=torch.Generator().manual_seed(3))
    ancestral = SAMPLERS["euler_a"](gauss.denoise, x_T, sigmas, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ddim, ancestral, rtol=0, atol=1e-12)
    assert not torch.allclose(ddim, euler)


def test_dpmpp_2m_sde_at_eta_0_is_dpmpp_2m(gauss):
    x_T = gauss.noisy(256, SIGMA_MAX, torch.Generator().manual_seed(0))
    sigmas = karras(12)
    sde = SAMPLERS["dpmpp_2m_sde"](gauss.denoise, x_T, sigmas, eta=0.0)
    torch.testing.assert_close(sde, SAMPLERS["dpmpp_2m"](gauss.denoise, x_T, sigmas), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_callback_sees_every_step_and_can_cancel(name, gauss):
    x_T = gauss.noisy(4, SIGMA_MAX, torch.Generator().manual_seed(0))
    sigmas = karras(6)
    seen = []
    out = SAMPLERS[name](gauss.denoise, x_T, sigmas, callback=seen.append, generator=torch.Generator().manual_seed(0))
    assert [s["i"] for s in seen] == list(range(6))
    assert [s["sigma"] for s in seen] == pytest.approx(sigmas[:-1].tolist())
    assert [s["sigma_next"] for s in seen] == pytest.approx(sigmas[1:].tolist())
    assert torch.equal(seen[-1]["x"], out) and seen[0]["denoised"].shape == x_T.shape

    class Cancelled(Exception):
        pass

    def cancel(step):
        if step["i"] == 2:
            raise Cancelled

    calls = []

    def counted(x, sigma):
        calls.append(1)
        return gauss.denoise(x, sigma)

    with pytest.raises(Cancelled):
        SAMPLERS[name](counted, x_T, sigmas, callback=cancel, generator=torch.Generator().manual_seed(0))
    assert len(calls) <= 3 * (2 if name == "heun" else 1)  # stopped after step 2


def test_extra_args_reach_the_model_and_sigma_is_per_batch(gauss):
    received = []

    def model(x, sigma, *, label):
        received.append((sigma.shape, sigma.dtype, label))
        return gauss.denoise(x, sigma)

    x = torch.randn(3, 2, 4, dtype=torch.float32)
    out = SAMPLERS["dpmpp_2m"](model, x * SIGMA_MAX, karras(3), extra_args={"label": "cat"})
    assert out.shape == x.shape and out.dtype == torch.float32
    assert received == [(torch.Size([3]), torch.float32, "cat")] * 3


def test_bad_arguments_raise(gauss):
    with pytest.raises(ValueError, match="sigmas must be 1-D"):
        SAMPLERS["euler"](gauss.denoise, torch.zeros(2, 1), torch.tensor([1.0]))
    for name in ("euler_a", "dpmpp_2m_sde", "ddim"):
        with pytest.raises(ValueError, match="eta must be >= 0"):
            SAMPLERS[name](gauss.denoise, torch.zeros(2, 1), karras(3), eta=-1.0)
