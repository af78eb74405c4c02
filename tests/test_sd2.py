"""What is particular to user Stable Diffusion 2.x checkpoints, offline, on a tiny random-weight v-prediction
model: detection and the parameterisation (a flag, an A1111 yaml, the default), the real SD 2.x key names,
our Euler against diffusers' own StableDiffusionPipeline, and the packaged config.

The tiny SD 2.x (UNet 32-64 channels with linear projections and per-level head counts, as SD 2.x's
[5, 10, 20, 20]; a 2-level VAE; a 2-layer OpenCLIP-like text encoder, gelu, with the full 49,408-token
vocabulary and a tokenizer padding with "!") is the tiny_sd2 fixture of conftest.py, saved twice: as a
diffusers folder (StableDiffusionPipeline.save_pretrained, v_prediction scheduler) and as one .safetensors
file under the real SD 2.x key names (`to_sd2_ldm` of tiny_checkpoints.py: the UNet and VAE mappings of
SD 1.x, the text encoder under OpenCLIP's `cond_stage_model.model.*` names with fused QKV, plus the
original's last layer, which SD 2.x never runs (it conditions on the penultimate one), its
text_projection and logit_scale). Adding and generating from both: test_stable_diffusion.py.
"""

from __future__ import annotations

import json
import shutil

import pytest
from tiny_checkpoints import CFG, NEGATIVE, PROMPT, SEEDS, SIZE, diffusers_images, karras_euler, packaged_networks
from tiny_checkpoints import add_model as _add
from tiny_checkpoints import parameter_counts, to_sd2_ldm

from designerbox.registry.files import ModelFileError

# --- detection and the parameterisation ------------------------------------------------------------------

def test_sd2_is_detected_in_both_formats(tiny_sd2, tmp_path):
    """A single file: sd2, v assumed (with a note); a folder: its scheduler decides, and its text encoder
    (OpenCLIP: gelu) tells it from SD 1.x, which shares the pipeline class."""
    from designerbox.registry.families import detect

    folder, single, _ = tiny_sd2
    found = detect(single)
    assert found.id == "sd2" and found.prediction == "v" and "--prediction eps" in found.note
    assert (detect(folder).id, detect(folder).prediction, detect(folder).native_size) == ("sd2", "v", 768)
    eps = tmp_path / "eps"
    shutil.copytree(folder, eps, ignore=shutil.ignore_patterns("*.safetensors"))
    sched = eps / "scheduler" / "scheduler_config.json"
    sched.write_text(json.dumps(json.loads(sched.read_text()) | {"prediction_type": "epsilon"}))
    assert (detect(eps).id, detect(eps).prediction, detect(eps).native_size) == ("sd2", "eps", 512)


def test_the_single_file_holds_the_real_sd2_key_names(tiny_sd2):
    from safetensors import safe_open

    with safe_open(str(tiny_sd2[1]), "pt") as f:
        keys = set(f.keys())
    for key in ["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight",
                "cond_stage_model.model.transformer.resblocks.2.mlp.c_proj.weight",  # the layer SD 2.x skips
                "cond_stage_model.model.token_embedding.weight", "cond_stage_model.model.positional_embedding",
                "cond_stage_model.model.ln_final.weight", "cond_stage_model.model.text_projection",
                "model.diffusion_model.input_blocks.1.1.proj_in.weight", "first_stage_model.decoder.mid.attn_1.q.weight"]:
        assert key in keys, key
    with safe_open(str(tiny_sd2[1]), "pt") as f:  # use_linear_projection: proj_in is a linear layer, not a 1x1 conv
        assert f.get_slice("model.diffusion_model.input_blocks.1.1.proj_in.weight").get_shape() == [32, 32]


def test_prediction_of_a_single_file_from_the_flag_a_yaml_or_the_default(tiny_sd2, sd_home, tmp_path, capsys):
    folder, single, config = tiny_sd2

    def scheduler_of(model_id):
        path = sd_home / "models" / model_id / "config" / "scheduler" / "scheduler_config.json"
        return json.loads(path.read_text())["prediction_type"]

    # no flag, no yaml: v, and the note says how to choose eps
    report = _add([single, "--config", config, "--id", "guessed"], capsys)
    assert report["prediction"] == "v" and report["native_size"] == 768 and "--prediction eps" in report["note"]
    assert scheduler_of("guessed") == "v_prediction"
    # --prediction eps: SD 2.x-base, 512 px; written into the copied scheduler config and the manifest
    report = _add([single, "--config", config, "--id", "base", "--prediction", "eps"], capsys)
    assert report["prediction"] == "eps" and report["native_size"] == 512 and "--prediction" in report["note"]
    manifest = json.loads((sd_home / "models" / "base" / "manifest.json").read_text())
    assert manifest["prediction"] == "eps" and manifest["native_size"] == [512, 512]
    assert scheduler_of("base") == "epsilon"
    # an A1111 yaml beside the file: v2-inference.yaml (no parameterization: eps), v2-inference-v.yaml (v)
    beside = tmp_path / "beside"
    beside.mkdir()
    shutil.copy(single, beside / "model.safetensors")
    (beside / "model.yaml").write_text("model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n"
                                       "  params:\n    linear_start: 0.00085\n")
    report = _add([beside / "model.safetensors", "--config", config, "--id", "yaml-eps"], capsys)
    assert report["prediction"] == "eps" and "model.yaml" in report["note"]
    (beside / "model.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert _add([beside / "model.safetensors", "--config", config, "--id", "yaml-v"], capsys)["prediction"] == "v"
    # a folder's scheduler decides: a flag that disagrees is refused, naming both
    from designerbox.registry.user_checkpoints import add_checkpoint

    with pytest.raises(ModelFileError, match=r"scheduler_config.json says v-prediction, not eps"):
        add_checkpoint(folder, sd_home, sd_home / "cache", prediction="eps")
    with pytest.raises(ModelFileError, match=r"unknown prediction 'x0'; choose one of: eps, v"):
        add_checkpoint(single, sd_home, sd_home / "cache", prediction="x0")


# --- against diffusers, and the packaged config ----------------------------------------------------------

def test_our_euler_matches_diffusers_on_the_v_prediction_model(tiny_sd2, sd_home, capsys):
    """The single file through our loader, sampler and v denoiser; the folder through diffusers'
    StableDiffusionPipeline with EulerDiscreteScheduler (v_prediction, Karras sigmas, linspace spacing),
    same noise. In [0, 255] pixel units, max 0.05 (float32 rounding; the same algorithm). An eps reading
    of the same weights draws another image: the parameterisation is really used."""
    from diffusers import StableDiffusionPipeline

    from designerbox.pipelines.stable_diffusion import LatentDiffusion, sd_text_to_image
    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    folder, single, config = tiny_sd2
    _add([single, "--config", config, "--id", "tiny-sd2-single"], capsys)
    ours = load_stable_diffusion(Registry(sd_home).get("tiny-sd2-single"), "cpu")
    assert isinstance(ours, LatentDiffusion) and ours.prediction == "v" and ours.tokenizer.pad_token_id == 0
    kwargs = dict(width=SIZE, height=SIZE, steps=2, sampler="euler", schedule="karras", cfg_scale=CFG, seeds=SEEDS)
    mine = sd_text_to_image(ours, PROMPT, NEGATIVE, **kwargs)
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                                   safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = karras_euler(pipe.scheduler)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    theirs = diffusers_images(pipe)
    assert mine.shape == theirs.shape == (len(SEEDS), 3, SIZE, SIZE)
    assert (mine * 255).std() > 1
    diff = (mine - theirs).abs() * 255
    assert diff.max() < 0.05, diff.max()
    ours.prediction = "eps"
    assert ((sd_text_to_image(ours, PROMPT, NEGATIVE, **kwargs) - mine).abs() * 255).max() > 1


def test_the_packaged_sd2_config_is_the_published_architecture():
    """On the meta device (no memory): the parameter counts of SD 2.1's UNet (865.9 M), VAE and the 23
    layers of OpenCLIP ViT-H/14 that SD 2.x runs (340.4 M); our inverse mapping gives names diffusers
    recognises as SD 2.x (infer_diffusers_model_type "v2"), and its converters, with the 24th layer
    dropped as our loader does, map them back onto exactly the networks' tensors."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        infer_diffusers_model_type,
    )

    from designerbox.registry.families import family_from_keys
    from designerbox.registry.user_checkpoints import _from_single_file

    unet, vae, te = packaged_networks("sd2")
    assert parameter_counts(unet, vae, te) == [865_910_724, 83_653_863, 340_387_840]
    ldm = to_sd2_ldm(unet, vae, te)
    assert "cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight" in ldm  # 24 in the file
    assert family_from_keys(list(ldm)).id == "sd2" and infer_diffusers_model_type(ldm) == "v2"
    assert set(convert_ldm_unet_checkpoint(ldm, unet.config)) == set(unet.state_dict())
    assert set(convert_ldm_vae_checkpoint(ldm, vae.config)) == set(vae.state_dict())
    clip = {k.removeprefix("text_model."): v for k, v in _from_single_file(ldm, "sd2", "text_encoder", te).items()}
    assert set(clip) == set(te.state_dict())
