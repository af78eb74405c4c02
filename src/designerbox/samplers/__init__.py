"""Samplers, noise schedules and denoiser adapters, k-diffusion style (Karras et al. 2022).

A network is wrapped into a denoiser D(x, sigma, **cond) (denoisers.py), a schedule gives the descending
sigmas (schedules.py), and a sampler integrates from noise * sigmas[0] to data (samplers.py).
"""

from designerbox.samplers.denoisers import (
    CFGDenoiser,
    DiscreteEpsDenoiser,
    DiscreteVDenoiser,
    FlowDenoiser,
    MaskedDenoiser,
)
from designerbox.samplers.samplers import (
    SAMPLER_INFO,
    SAMPLERS,
    SamplerInfo,
    get_ancestral_step,
    get_sampler,
    sample_ddim,
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
)
from designerbox.samplers.schedules import (
    SCHEDULES,
    get_sigmas_exponential,
    get_sigmas_karras,
    get_sigmas_simple,
    make_sigmas,
)

__all__ = [
    "CFGDenoiser", "DiscreteEpsDenoiser", "DiscreteVDenoiser", "FlowDenoiser", "MaskedDenoiser",
    "SAMPLERS", "SAMPLER_INFO", "SamplerInfo", "get_ancestral_step", "get_sampler",
    "sample_ddim", "sample_dpmpp_2m", "sample_dpmpp_2m_sde", "sample_euler", "sample_euler_ancestral", "sample_heun",
    "SCHEDULES", "get_sigmas_exponential", "get_sigmas_karras", "get_sigmas_simple", "make_sigmas",
]
