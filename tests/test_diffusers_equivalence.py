"""Our pipeline against diffusers' own schedulers, in diffusers' denoising loop, on the same weights.

The tiny random-weight model of conftest.py (16x16); both sides get the same text embeddings and the
same starting noise (initial_noise of the same seeds); the reference loop is
designerbox.pipelines.reference_diffusers.diffusers_text_to_image. Differences are in [0, 255] pixel
units. Tolerances, with what this model gave when they were set (2 seeds, 8 and 20 steps):

  euler/karras    vs EulerDiscreteScheduler(use_karras_sigmas, timestep_spacing="linspace"):
                  max 0.05 (seen <= 0.0051): the same algorithm, up to float32 rounding.
  dpmpp_2m/karras vs DPMSolverMultistepScheduler(dpmsolver++, order 2, use_karras_sigmas):
                  with the UNet given the continuous timestep: max 0.05 (seen <= 0.0083), the same
                  algorithm; as diffusers runs it, the UNet gets floor(t) (int64 timesteps):
                  mean 1.5, max 16 (seen mean 0.77, max 8.7 at 8 steps; 0.46 and 4.1 at 20).
                  A random network reacts to t more than a trained one; bench/cpu_generate.py
                  reports the figure for real weights.
"""

from __future__ import annotations

import json

import pytest
import torch

from designerbox.pipelines.reference_diffusers import (
    diffusers_text_to_image,
    load_diffusers_scheduler,
    load_diffusers_unet,
)
from designerbox.pipelines.text_to_image import initial_noise, text_to_image
from designerbox.registry.loading import load_pixel_diffusion
from designerbox.registry.manifest import ModelManifest
from designerbox.samplers import make_sigmas

PROMPT, NEGATIVE = "a red apple", "blurry"
SEEDS = [1, 2]
CFG = 4.0
SAME_ALGORITHM_MAX = 0.05  # /255


@pytest.fixture(scope="module")
def models(tiny_model_dir):
    ours = load_pixel_diffusion(ModelManifest.read(tiny_model_dir), "cpu")
    pooled = ours.text_encoder([PROMPT, NEGATIVE])[1]  # (2, 384)
    return tiny_model_dir, ours, load_diffusers_unet(tiny_model_dir), pooled


def compare(models, sampler: str, steps: int, continuous_timesteps: bool = False,
            schedule: str = "karras") -> torch.Tensor:
    """|ours - diffusers| * 255 for the same seeds, (B, 3, 16, 16)."""
    folder, ours, unet, pooled = models
    mine = text_to_image(ours, PROMPT, NEGATIVE, width=16, height=16, steps=steps, sampler=sampler,
                         schedule=schedule, cfg_scale=CFG, seeds=SEEDS)
    scheduler = load_diffusers_scheduler(folder, sampler, schedule)
    theirs = diffusers_text_to_image(unet, scheduler, initial_noise(SEEDS, (3, 16, 16)), pooled[:1], pooled[1:],
                                     steps=steps, cfg_scale=CFG, continuous_timesteps=continuous_timesteps)
    assert mine.shape == theirs.shape == (len(SEEDS), 3, 16, 16)
    assert (mine * 255).std() > 1  # a real image, not a constant that would agree trivially
    return (mine - theirs).abs() * 255


@pytest.mark.parametrize("schedule", ["karras", "exponential"])
@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m"])
def test_diffusers_schedulers_step_through_our_sigmas(models, sampler, schedule):
    folder, ours, _, _ = models
    scheduler = load_diffusers_scheduler(folder, sampler, schedule)
    scheduler.set_timesteps(20)
    mine = make_sigmas(schedule, 20, ours.denoiser())
    assert len(scheduler.sigmas) == len(mine) == 21 and scheduler.sigmas[-1] == mine[-1] == 0
    torch.testing.assert_close(scheduler.sigmas[:-1].double(), mine[:-1].double(), rtol=2e-5, atol=0)


def test_euler_with_leading_spacing_starts_far_lower(models):
    """Why load_diffusers_scheduler sets timestep_spacing="linspace" for Euler: with the configs'
    "leading", EulerDiscreteScheduler takes its Karras sigma_max from t = 950, not from the table's end."""
    folder, ours, _, _ = models
    scheduler = load_diffusers_scheduler(folder, "euler", "karras", timestep_spacing="leading")
    scheduler.set_timesteps(20)
    assert scheduler.sigmas[0] < ours.denoiser().sigma_max / 100


@pytest.mark.parametrize("schedule", ["karras", "exponential"])
@pytest.mark.parametrize("steps", [8, 20])
def test_euler_matches_diffusers(models, steps, schedule):
    assert compare(models, "euler", steps, schedule=schedule).max() < SAME_ALGORITHM_MAX


@pytest.mark.parametrize("schedule", ["karras", "exponential"])
@pytest.mark.parametrize("steps", [8, 20])
def test_dpmpp_2m_matches_diffusers_given_the_same_timestep(models, steps, schedule):
    assert compare(models, "dpmpp_2m", steps, continuous_timesteps=True, schedule=schedule).max() < SAME_ALGORITHM_MAX


@pytest.mark.parametrize("schedule", ["karras", "exponential"])
@pytest.mark.parametrize("steps", [8, 20])
def test_dpmpp_2m_is_close_to_diffusers_as_diffusers_runs_it(models, steps, schedule):
    diff = compare(models, "dpmpp_2m", steps, schedule=schedule)
    assert diff.mean() < 1.5 and diff.max() < 16


def test_a_cross_attention_network_matches_diffusers_given_its_token_states(tmp_path, tiny_model_dir):
    """dbx-base-v2's kind of network (training/grow.py: cross-attention to the prompt's token states),
    random weights everywhere so that the tokens change the output: the reference loop given the same
    padded token states and masks draws what ours draws (Euler: the same algorithm)."""
    from designerbox.pipelines.text_to_image import pad_tokens
    from designerbox.training.grow import grown_config
    from designerbox.training.model_folder import create_pixel_model
    tiny = json.loads((tiny_model_dir / "unet" / "config.json").read_text())
    tiny = {k: v for k, v in tiny.items() if not k.startswith("_")}  # diffusers' bookkeeping keys
    folder = create_pixel_model(tmp_path / "tiny-attn", "tiny-attn", grown_config(tiny, levels=(1,)), native=16)
    ours = load_pixel_diffusion(ModelManifest.read(folder), "cpu")
    assert ours.tokens
    states, pooled = ours.text_encoder([PROMPT, NEGATIVE])
    padded, mask = pad_tokens(states)
    mine = text_to_image(ours, PROMPT, NEGATIVE, width=16, height=16, steps=8, sampler="euler",
                         schedule="karras", cfg_scale=CFG, seeds=SEEDS)
    unet, scheduler = load_diffusers_unet(folder), load_diffusers_scheduler(folder, "euler", "karras")
    noise = initial_noise(SEEDS, (3, 16, 16))
    theirs = diffusers_text_to_image(unet, scheduler, noise, pooled[:1], pooled[1:], steps=8, cfg_scale=CFG,
                                     cond_tokens=(padded[:1], mask[:1]), uncond_tokens=(padded[1:], mask[1:]))
    assert (mine * 255).std() > 1
    assert ((mine - theirs).abs() * 255).max() < SAME_ALGORITHM_MAX
    # without the token states (the pooled embedding as the only token) it is another drawing
    pooled_only = diffusers_text_to_image(unet, load_diffusers_scheduler(folder, "euler", "karras"), noise,
                                          pooled[:1], pooled[1:], steps=8, cfg_scale=CFG)
    assert ((mine - pooled_only).abs() * 255).max() > 1
