"""Shared fixtures: a DESIGNERBOX_HOME in a temporary folder holding a tiny random-weight model.

The tiny model is a real UNet2DConditionModel with the built-in model's kind of config at 16x16,
saved in the real folder format; the text encoder is the real all-MiniLM-L6-v2 from its package.
"""

from __future__ import annotations

import pytest
import torch

from designerbox.settings import Settings
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


# --- user Stable Diffusion checkpoints (tests/test_stable_diffusion.py, tests/test_sdxl.py) -----------

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
