"""Noise schedules: shape, order, endpoints and the spacing each one promises."""

from __future__ import annotations

import math

import pytest
import torch

from designerbox.samplers import (
    SCHEDULES,
    DiscreteVDenoiser,
    get_sigmas_exponential,
    get_sigmas_karras,
    get_sigmas_simple,
    make_sigmas,
)
from designerbox.samplers.discrete import alphas_cumprod

SIGMA_MIN, SIGMA_MAX = 0.03, 14.6


@pytest.mark.parametrize("get_sigmas", [get_sigmas_karras, get_sigmas_exponential])
@pytest.mark.parametrize("n", [1, 2, 10, 33])
def test_parametric_schedules(get_sigmas, n):
    sigmas = get_sigmas(n, SIGMA_MIN, SIGMA_MAX, dtype=torch.float64)
    assert sigmas.shape == (n + 1,) and sigmas.dtype == torch.float64
    assert sigmas[-1] == 0 and bool((sigmas.diff() < 0).all())
    assert sigmas[0].item() == pytest.approx(SIGMA_MAX, rel=1e-12)
    if n > 1:
        assert sigmas[-2].item() == pytest.approx(SIGMA_MIN, rel=1e-12)
    assert get_sigmas(n, SIGMA_MIN, SIGMA_MAX).dtype == torch.float32


def test_karras_is_uniform_in_sigma_to_the_one_over_rho():
    sigmas = get_sigmas_karras(12, SIGMA_MIN, SIGMA_MAX, rho=7.0, dtype=torch.float64)[:-1]
    steps = (sigmas ** (1 / 7)).diff()  # Karras et al. 2022, eq. 5
    torch.testing.assert_close(steps, steps[:1].expand(11))
    linear = get_sigmas_karras(5, 1.0, 5.0, rho=1.0, dtype=torch.float64)
    assert linear.tolist() == pytest.approx([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])


def test_exponential_is_uniform_in_log_sigma():
    log_steps = get_sigmas_exponential(12, SIGMA_MIN, SIGMA_MAX, dtype=torch.float64)[:-1].log().diff()
    torch.testing.assert_close(log_steps, torch.full((11,), math.log(SIGMA_MIN / SIGMA_MAX) / 11, dtype=torch.float64))


def test_simple_takes_evenly_spaced_entries_from_the_top_of_the_table():
    table = torch.arange(1, 1001, dtype=torch.float64) / 10  # ascending, T = 1000
    sigmas = get_sigmas_simple(4, table, dtype=torch.float64)
    assert sigmas.tolist() == [100.0, 75.0, 50.0, 25.0, 0.0]  # indices 999, 749, 499, 249 (ComfyUI's)
    assert get_sigmas_simple(1000, table, dtype=torch.float64)[:-1].flip(0).tolist() == table.tolist()
    assert get_sigmas_simple(7, table).shape == (8,)
    with pytest.raises(ValueError, match="1 <= n <= 1000"):
        get_sigmas_simple(1001, table)


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_make_sigmas_uses_the_denoisers_range(schedule):
    model = DiscreteVDenoiser(None, alphas_cumprod("scaled_linear", 1000, 0.00085, 0.012))
    sigmas = make_sigmas(schedule, 20, model)
    assert sigmas.shape == (21,) and sigmas.dtype == torch.float32
    assert sigmas[-1] == 0 and bool((sigmas.diff() < 0).all())
    assert sigmas[0].item() == pytest.approx(model.sigma_max, rel=1e-6)
    assert sigmas[-2].item() >= model.sigma_min * (1 - 1e-6)


def test_bad_arguments_raise_with_the_valid_choices():
    model = DiscreteVDenoiser(None, alphas_cumprod("linear"))
    with pytest.raises(ValueError, match=r"unknown schedule 'cosine'; valid: karras, exponential, simple"):
        make_sigmas("cosine", 10, model)
    with pytest.raises(ValueError, match="at least 1"):
        get_sigmas_karras(0, SIGMA_MIN, SIGMA_MAX)
    with pytest.raises(ValueError, match="sigma_min <= sigma_max"):
        get_sigmas_exponential(10, SIGMA_MAX, SIGMA_MIN)
