"""Adding user Stable Diffusion checkpoint files (registry/user_checkpoints.py, families.py, clip_tokenizer.py),
offline: the CLIP tokenizer built from open-clip-torch's wheel, the family read from tensor names or a
diffusers folder, files refused with a message that names the problem, and the packaged SD 1.5 config
checked against the published architecture.

The tiny checkpoints are the session fixtures of conftest.py (built from tiny_checkpoints.py). The CLIP
tokenizer needs `open-clip-torch==3.3.0` from PyPI (pip download, cached per session: the clip_cache
fixture); tests that need it are skipped when pip cannot fetch it. Generating from the added models:
test_stable_diffusion.py; family-specific checks: test_sd2.py, test_sdxl.py, test_sdxl_refiner.py.
"""

from __future__ import annotations

import pytest
import torch
from tiny_checkpoints import packaged_networks, parameter_counts, to_ldm

from designerbox.registry.files import ModelFileError

# --- the tokenizer -----------------------------------------------------------------------------------

def test_clip_tokenizer_built_offline_gives_clip_ids(clip_cache):
    from designerbox.registry.clip_tokenizer import clip_tokenizer

    tok = clip_tokenizer(clip_cache)
    assert len(tok) == 49408 and tok.model_max_length == 77
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok("A photo of an astronaut riding a horse on mars").input_ids == [
        49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407]
    padded = tok(["a cat"], padding="max_length", max_length=77, truncation=True).input_ids[0]
    assert padded[:4] == [49406, 320, 2368, 49407] and len(padded) == 77 and set(padded[3:]) == {49407}


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path):
    from designerbox.registry.clip_tokenizer import TokenizerAssetError, read_bpe_merges

    fake = tmp_path / "open_clip_torch-3.3.0-py3-none-any.whl"
    fake.write_bytes(b"PK\x03\x04 not the wheel")
    with pytest.raises(TokenizerAssetError, match="sha256"):
        read_bpe_merges(fake)


# --- family detection ---------------------------------------------------------------------------------

def _header_only(path, keys):
    """A valid safetensors file whose tensors are one float each: enough for detection."""
    from safetensors.torch import save_file

    save_file({k: torch.zeros(1) for k in keys}, str(path))
    return path


@pytest.mark.parametrize("keys, family", [
    (["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.transformer.text_model.x"], "sd15"),
    (["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.model.ln_final.weight"], "sd2"),
    (["model.diffusion_model.input_blocks.0.0.weight", "conditioner.embedders.0.transformer.x",
      "conditioner.embedders.1.model.ln_final.weight"], "sdxl"),
    (["model.diffusion_model.input_blocks.0.0.weight", "conditioner.embedders.0.model.ln_final.weight"],
     "sdxl-refiner"),
    (["model.diffusion_model.joint_blocks.0.x", "model.diffusion_model.x_embedder.proj.weight"], "sd3"),
    (["double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight", "guidance_in.in_layer.weight"],
     "flux-dev"),
    (["model.diffusion_model.double_blocks.0.x", "model.diffusion_model.single_blocks.0.x"], "flux-schnell"),
])
def test_family_is_read_from_the_tensor_names(tmp_path, keys, family):
    from designerbox.registry.families import detect

    found = detect(_header_only(tmp_path / "m.safetensors", keys))
    assert found.id == family
    if family == "sd2":
        assert found.prediction == "v" and "assumed" in found.note


def test_an_unknown_layout_names_what_it_found_and_the_known_families(tmp_path):
    from designerbox.registry.families import UnknownFamilyError, detect

    with pytest.raises(UnknownFamilyError, match=r"encoder\.layer.*known families: sd15, sd2, sdxl"):
        detect(_header_only(tmp_path / "bert.safetensors", ["encoder.layer.0.weight", "pooler.dense.weight"]))


def test_a_diffusers_folder_is_recognised(tiny_sd):
    from designerbox.registry.families import detect

    assert detect(tiny_sd[0]).id == "sd15"


# --- bad files ----------------------------------------------------------------------------------------

def test_a_pickle_checkpoint_is_refused_unopened(sd_home, tmp_path):
    from designerbox.cli import main

    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04 would run code if unpickled")
    assert main(["models", "add", str(ckpt)]) != 0
    from designerbox.registry.user_checkpoints import add_checkpoint

    with pytest.raises(ModelFileError, match="never unpickles"):
        add_checkpoint(ckpt, sd_home, sd_home / "cache")
    disguised = tmp_path / "model.safetensors"
    disguised.write_bytes(b"\x80\x04 a pickle with another name")
    with pytest.raises(ModelFileError, match="never unpickles"):
        add_checkpoint(disguised, sd_home, sd_home / "cache")


def test_a_truncated_file_is_refused(tiny_sd, sd_home, tmp_path):
    from designerbox.registry.user_checkpoints import add_checkpoint

    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(tiny_sd[1].read_bytes()[:100_000])
    with pytest.raises(ModelFileError, match="truncated"):
        add_checkpoint(cut, sd_home, sd_home / "cache")


def test_wrong_keys_are_named(tiny_sd, sd_home, tmp_path):
    from safetensors.torch import load_file, save_file

    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import add_checkpoint, load_stable_diffusion

    state = load_file(str(tiny_sd[1]))
    dropped = "model.diffusion_model.out.2.weight"
    del state[dropped]
    broken = tmp_path / "broken.safetensors"
    save_file(state, str(broken))
    add_checkpoint(broken, sd_home, sd_home / "cache", config=tiny_sd[2])
    with pytest.raises(ModelFileError, match=r"\(unet\).*1 missing.*conv_out\.weight"):
        load_stable_diffusion(Registry(sd_home).get("broken"), "cpu")
    # the full SD 1.5 architecture is not what this tiny file holds: shapes are named
    add_checkpoint(tiny_sd[1], sd_home, sd_home / "cache", model_id="tiny-as-sd15")
    with pytest.raises(ModelFileError, match="other shapes"):
        load_stable_diffusion(Registry(sd_home).get("tiny-as-sd15"), "cpu")


def test_an_sdxl_file_claimed_as_sd15_is_refused(sd_home, tmp_path):
    from designerbox.registry.user_checkpoints import add_checkpoint

    xl = _header_only(tmp_path / "xl.safetensors", [
        "model.diffusion_model.input_blocks.0.0.weight", "conditioner.embedders.0.transformer.text_model.x",
        "conditioner.embedders.1.model.ln_final.weight"])
    with pytest.raises(ModelFileError, match=r"given as Stable Diffusion 1\.x \(sd15\).*Stable Diffusion XL base"):
        add_checkpoint(xl, sd_home, sd_home / "cache", family="sd15")
    refiner = _header_only(tmp_path / "refiner.safetensors", [
        "model.diffusion_model.input_blocks.0.0.weight", "conditioner.embedders.0.model.ln_final.weight"])
    with pytest.raises(ModelFileError, match=r"given as Stable Diffusion XL base \(sdxl\).*Stable Diffusion XL refiner"):
        add_checkpoint(refiner, sd_home, sd_home / "cache", family="sdxl")


def test_a_component_folder_with_an_fp16_variant_reads_the_full_weights(tmp_path):
    """Published folders keep name.safetensors and name.fp16.safetensors side by side."""
    from designerbox.registry.user_checkpoints import _component_file

    folder = tmp_path / "unet"
    folder.mkdir()
    (folder / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"")
    assert _component_file(folder).name == "diffusion_pytorch_model.fp16.safetensors"
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    assert _component_file(folder).name == "diffusion_pytorch_model.safetensors"
    (folder / "other.safetensors").write_bytes(b"")
    with pytest.raises(ModelFileError, match="should hold one .safetensors file"):
        _component_file(folder)


# --- the packaged config ---------------------------------------------------------------------------------

def test_the_packaged_sd15_config_is_the_published_architecture():
    """Built on the meta device (no memory): the parameter counts of SD 1.5's UNet, VAE and CLIP
    ViT-L/14 text encoder, and diffusers' converter maps the full-size LDM key layout onto them."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    from designerbox.registry.families import family_from_keys

    unet, vae, text_encoder = packaged_networks("sd15")
    assert parameter_counts(unet, vae, text_encoder) == [859_520_964, 83_653_863, 123_060_480]
    ldm = to_ldm(unet, vae, text_encoder)
    assert family_from_keys(list(ldm)).id == "sd15"
    assert set(convert_ldm_unet_checkpoint(ldm, unet.config)) == set(unet.state_dict())
    assert set(convert_ldm_vae_checkpoint(ldm, vae.config)) == set(vae.state_dict())
