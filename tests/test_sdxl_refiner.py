"""The SDXL refiner (OpenCLIP bigG alone, aesthetic-score conditioning), offline, on a tiny
random-weight model saved as a diffusers folder (StableDiffusionXLImg2ImgPipeline) and as one file in
the original SGM layout (conditioner.embedders.0.model.*); used as the second, image-to-image pass of a
request (`refiner`), and matching diffusers' own img2img pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_checkpoints import (
    CFG,
    NEGATIVE,
    PROMPT,
    SEEDS,
    SIZE,
    TINY_CLIP_2,
    TINY_XL_UNET,
    TINY_XL_VAE,
    karras_euler,
    open_clip_to_ldm,
    packaged_scheduler,
    save_both,
    sdxl_unet_to_ldm,
    tiny_models,
    vae_to_ldm,
)
from tiny_checkpoints import add_model as _add
from tiny_checkpoints import load as _load

TINY_REFINER_UNET = dict(TINY_XL_UNET, cross_attention_dim=32,  # bigG's states alone
                         projection_class_embeddings_input_dim=72)  # 32 (pooled) + 5 * 8 (size, crop, score)


@pytest.fixture(scope="session")
def tiny_refiner(tmp_path_factory, clip_cache):
    """(diffusers folder, single file, config folder) of one tiny random-weight SDXL refiner."""
    from diffusers import StableDiffusionXLImg2ImgPipeline

    from designerbox.registry.clip_tokenizer import clip_tokenizer

    unet, vae, _, text_encoder_2 = tiny_models(1, TINY_REFINER_UNET, TINY_XL_VAE, clip_2=TINY_CLIP_2)
    pipe = StableDiffusionXLImg2ImgPipeline(vae=vae, text_encoder=None, text_encoder_2=text_encoder_2, tokenizer=None,
                                            tokenizer_2=clip_tokenizer(clip_cache, "!"), unet=unet,
                                            scheduler=packaged_scheduler("sdxl-refiner"), requires_aesthetics_score=True,
                                            force_zeros_for_empty_prompt=False, add_watermarker=False)
    ldm = (sdxl_unet_to_ldm(unet.state_dict(), unet.config) | vae_to_ldm(vae.state_dict(), vae.config)
           | open_clip_to_ldm(text_encoder_2.state_dict(), prefix="conditioner.embedders.0.model."))
    return save_both(tmp_path_factory.mktemp("refiner"), "tiny-refiner", pipe, ldm)


def test_the_refiner_is_detected_and_added_in_both_formats(tiny_refiner, sd_home, capsys):
    from designerbox.registry.families import detect

    folder, single, config = tiny_refiner
    assert detect(folder).id == detect(single).id == "sdxl-refiner"
    assert _add([single, "--config", config, "--id", "ref-single"], capsys)["family"] == "sdxl-refiner"
    assert _add([folder, "--id", "ref-folder"], capsys)["family"] == "sdxl-refiner"
    model = _load("ref-single", sd_home)
    assert model.text_encoder is None and model.aesthetic_score == 6.0 and model.tokenizer_2.pad_token_id == 0


def test_the_refiner_single_file_and_folder_give_the_same_image(tiny_refiner, sd_home, capsys):
    from designerbox.pipelines.stable_diffusion_xl import sdxl_text_to_image

    folder, single, config = tiny_refiner
    _add([single, "--config", config, "--id", "ref-single"], capsys)
    _add([folder, "--id", "ref-folder"], capsys)
    init = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    kwargs = dict(width=SIZE, height=SIZE, steps=4, sampler="euler", schedule="karras", cfg_scale=CFG, seeds=SEEDS,
                  init_images=init, strength=0.5)
    a = sdxl_text_to_image(_load("ref-single", sd_home), PROMPT, NEGATIVE, **kwargs)
    b = sdxl_text_to_image(_load("ref-folder", sd_home), PROMPT, NEGATIVE, **kwargs)
    assert (a * 255).std() > 1 and ((a - b).abs() * 255).max() < 0.01


@pytest.mark.parametrize("negative", [NEGATIVE, None])
def test_our_refiner_matches_diffusers_img2img_pipeline(tiny_refiner, sd_home, capsys, negative):
    """Image to image, 4 Euler steps (Karras) at strength 0.5 from the same encoded picture and noise
    through StableDiffusionXLImg2ImgPipeline (given the latents, so that it does not draw a sample of
    the VAE's posterior where we take its mean). In [0, 255] pixel units, max 0.05."""
    from diffusers import StableDiffusionXLImg2ImgPipeline

    from designerbox.pipelines.stable_diffusion_xl import sdxl_text_to_image

    folder, single, config = tiny_refiner
    _add([single, "--config", config, "--id", "ref-single"], capsys)
    ours = _load("ref-single", sd_home)
    init = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    mine = sdxl_text_to_image(ours, PROMPT, negative, width=SIZE, height=SIZE, steps=4, sampler="euler",
                              schedule="karras", cfg_scale=CFG, seeds=SEEDS, init_images=init, strength=0.5)
    pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    pipe.scheduler = karras_euler(pipe.scheduler)
    pipe.set_progress_bar_config(disable=True)
    latents = ours.encode_images(init).expand(len(SEEDS), -1, -1, -1)
    theirs = pipe([PROMPT] * 2, negative_prompt=[negative] * 2 if negative else None, image=latents, strength=0.5,
                  num_inference_steps=4, guidance_scale=CFG, output_type="pt",
                  generator=[torch.Generator().manual_seed(s) for s in SEEDS]).images
    assert mine.shape == theirs.shape == (2, 3, SIZE, SIZE) and (mine * 255).std() > 1
    diff = (mine - theirs).abs() * 255
    assert diff.max() < 0.05, diff.max()


def test_a_request_with_a_refiner_redraws_the_base_image(tiny_sdxl, tiny_refiner, sd_home, tmp_path, capsys):
    """SDXL base then the refiner as image to image (CLI --refiner): the record keeps the base's
    request and model and says what the refiner did; the refiner changes the image."""
    from designerbox.cli import main

    _add([tiny_sdxl[0], "--id", "base"], capsys)
    _add([tiny_refiner[0], "--id", "refiner"], capsys)
    args = [PROMPT, "--model", "base", "--steps", "4", "--sampler", "euler", "--size", f"{SIZE}x{SIZE}", "--seed", "3",
            "--json", "--no-gallery", "--quiet"]
    assert main(["generate", *args, "-o", str(tmp_path / "a")]) == 0
    plain = json.loads(capsys.readouterr().out)[0]
    assert main(["generate", *args, "--refiner", "refiner", "--refiner-strength", "0.5", "-o", str(tmp_path / "b")]) == 0
    refined = json.loads(capsys.readouterr().out)[0]
    rec = refined["record"]
    assert rec["model"]["id"] == "base" and rec["request"]["refiner"] == "refiner"
    assert rec["refiner"]["id"] == "refiner" and rec["refiner"]["strength"] == 0.5 and rec["refiner"]["steps_run"] == 2
    assert len(rec["refiner"]["sha256"]) == 64
    a, b = (np.asarray(Image.open(x["path"])).astype(int) for x in (plain, refined))
    assert a.shape == b.shape == (SIZE, SIZE, 3) and np.abs(a - b).mean() > 0.5
    assert main(["generate", *args, "--refiner-strength", "0.5", "-o", str(tmp_path / "c")]) != 0
    assert "refiner_strength needs a refiner" in capsys.readouterr().err


def test_the_packaged_refiner_config_matches_the_full_size_layout():
    """On the meta device: the refiner's UNet from configs/sdxl-refiner (384-768-1536-1536, 4 transformer
    layers, cross-attention 1280, 2560 = 1280 pooled + 5 x 256 time features) takes exactly the tensors
    diffusers' converter makes of its full-size SGM layout, and the layout is detected as the refiner."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    from designerbox.registry.families import family_from_keys
    from designerbox.registry.user_checkpoints import packaged_config

    config = packaged_config("sdxl-refiner")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(config / "unet")))
    ldm = sdxl_unet_to_ldm(unet.state_dict(), unet.config)
    ldm["conditioner.embedders.0.model.ln_final.weight"] = torch.zeros(1)
    assert family_from_keys(list(ldm)).id == "sdxl-refiner"
    assert set(convert_ldm_unet_checkpoint(ldm, unet.config)) == set(unet.state_dict())
    assert unet.add_embedding.linear_1.in_features == 2560 and unet.config.cross_attention_dim == 1280
