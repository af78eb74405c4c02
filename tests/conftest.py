"""Shared fixtures: a DESIGNERBOX_HOME in a temporary folder holding a tiny random-weight model, a tiny
training dataset, and the tiny user Stable Diffusion checkpoints (SD 1.x, 2.x, XL, SD3, FLUX).

The tiny model is a real UNet2DConditionModel with the built-in model's kind of config at 16x16,
saved in the real folder format; the text encoder is the real all-MiniLM-L6-v2 from its package.
The user checkpoints are built once per session from the configs of tiny_checkpoints.py and
tiny_flow_checkpoints.py; they need the CLIP tokenizer (clip_cache) and are skipped without it.
"""

from __future__ import annotations

import numpy as np
import pytest
import tiny_checkpoints as tiny
import torch
from tiny_flow_checkpoints import build_flux, build_sd3

from designerbox.settings import Settings
from designerbox.training import data
from designerbox.training.model_folder import create_pixel_model

TINY_UNET = dict(
    sample_size=16, in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=1,
    down_block_types=["DownBlock2D"] * 2, up_block_types=["UpBlock2D"] * 2, mid_block_type="UNetMidBlock2D",
    cross_attention_dim=384, class_embed_type="projection", projection_class_embeddings_input_dim=384,
    resnet_time_scale_shift="scale_shift", norm_num_groups=8,
)


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return create_pixel_model(tmp_path_factory.mktemp("models") / "tiny-test", "tiny-test", TINY_UNET, native=16,
                              default_size=[16, 16], good_at=["tests"])


@pytest.fixture
def home(tmp_path, tiny_model_dir, monkeypatch):
    """A fresh DESIGNERBOX_HOME with the tiny model installed as a user model."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(tiny_model_dir, home / "models" / "tiny-test")
    monkeypatch.setenv("DESIGNERBOX_HOME", str(home))
    monkeypatch.setenv("DESIGNERBOX_DEVICE", "cpu")
    return home


@pytest.fixture
def studio(home):
    from designerbox.studio import Studio

    return Studio(Settings.from_env())


@pytest.fixture
def dataset(tmp_path):
    """A tiny training dataset (training/data.py): 12 random 32x32 images with captions, the first held out."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    meta = [{"source": "noto", "style": "emoji", "split": "heldout" if i == 0 else "train", "licence": "MIT",
             "captions": [f"thing {i}, emoji", f"a red thing {i}, emoji", f"thing {i}"]} for i in range(12)]
    data.write(tmp_path / "ds", images, meta)
    return tmp_path / "ds"


# --- user Stable Diffusion checkpoints (the tiny models of tiny_checkpoints.py and tiny_flow_checkpoints.py) ------

@pytest.fixture(scope="session")
def clip_cache(tmp_path_factory):
    """A cache folder holding the CLIP tokenizer files, built once per session from open-clip-torch's
    BPE merges (pip download from the package index); the tests that need it skip without it."""
    from designerbox.registry.clip_tokenizer import tokenizer_folder
    from designerbox.training.fetch import FetchError

    cache = tmp_path_factory.mktemp("cache")
    try:
        tokenizer_folder(cache)
    except FetchError as err:
        pytest.skip(f"open-clip-torch==3.3.0 could not be fetched with pip: {err}")
    return cache


@pytest.fixture
def sd_home(tmp_path, monkeypatch, clip_cache):
    """A fresh DESIGNERBOX_HOME whose cache already holds the CLIP tokenizer; CPU only."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(clip_cache, home / "cache")
    monkeypatch.setenv("DESIGNERBOX_HOME", str(home))
    monkeypatch.setenv("DESIGNERBOX_DEVICE", "cpu")
    return home


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory, clip_cache):
    """(diffusers folder, single file, config folder) of one tiny random-weight SD 1.x model."""
    from diffusers import StableDiffusionPipeline

    from designerbox.registry.clip_tokenizer import clip_tokenizer

    unet, vae, text_encoder, _ = tiny.tiny_models(0, tiny.TINY_UNET, tiny.TINY_VAE, clip=tiny.TINY_CLIP)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(clip_cache),
                                   unet=unet, scheduler=tiny.packaged_scheduler("sd15"), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    return tiny.save_both(tmp_path_factory.mktemp("sd"), "tiny-sd15", pipe, tiny.to_ldm(unet, vae, text_encoder))


@pytest.fixture(scope="session")
def tiny_sd2(tmp_path_factory, clip_cache):
    """(diffusers folder, single file, config folder) of one tiny random-weight SD 2.x (v-prediction)."""
    from diffusers import StableDiffusionPipeline

    from designerbox.registry.clip_tokenizer import clip_tokenizer

    unet, vae, text_encoder, _ = tiny.tiny_models(0, tiny.TINY_SD2_UNET, tiny.TINY_VAE, clip=tiny.TINY_OPEN_CLIP)
    scheduler = tiny.packaged_scheduler("sd2")
    assert scheduler.config.prediction_type == "v_prediction"
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(clip_cache, "!"),
                                   unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    return tiny.save_both(tmp_path_factory.mktemp("sd2"), "tiny-sd2", pipe, tiny.to_sd2_ldm(unet, vae, text_encoder))


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory, clip_cache):
    """(diffusers folder, single file, config folder) of one tiny random-weight SDXL."""
    from diffusers import StableDiffusionXLPipeline

    from designerbox.registry.clip_tokenizer import clip_tokenizer

    unet, vae, text_encoder, text_encoder_2 = tiny.tiny_models(0, tiny.TINY_XL_UNET, tiny.TINY_XL_VAE,
                                                               clip=tiny.TINY_CLIP, clip_2=tiny.TINY_CLIP_2)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=clip_tokenizer(clip_cache), tokenizer_2=clip_tokenizer(clip_cache, "!"),
                                     unet=unet, scheduler=tiny.packaged_scheduler("sdxl"),
                                     force_zeros_for_empty_prompt=True, add_watermarker=False)
    return tiny.save_both(tmp_path_factory.mktemp("sdxl"), "tiny-sdxl", pipe,
                          tiny.to_sdxl_ldm(unet, vae, text_encoder, text_encoder_2))


@pytest.fixture(scope="session")
def tiny_sd3(tmp_path_factory, clip_cache):
    """A diffusers folder of one tiny random-weight SD3."""
    return build_sd3(tmp_path_factory.mktemp("sd3"), clip_cache)


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory, clip_cache):
    """{"flux-dev": folder, "flux-schnell": folder}"""
    root = tmp_path_factory.mktemp("flux")
    return {"flux-dev": build_flux(root, clip_cache, True), "flux-schnell": build_flux(root, clip_cache, False)}
