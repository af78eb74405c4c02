"""SD3 and FLUX single files in the original layouts (registry/flow_single_file.py), offline: SD3 with every
network in the file, FLUX dev as Black Forest Labs ships it (the transformer alone), FLUX schnell as a
ComfyUI checkpoint, each drawing what its diffusers folder draws; files missing a part name what to add;
and at the published sizes, on the meta device, the layouts convert as diffusers' own converters do.

The single files are written from the tiny folders (the tiny_sd3 and tiny_flux fixtures of conftest.py)
by tiny_flow_checkpoints.py, with the inverse of diffusers' converters. The folders themselves:
test_flow_models.py.
"""

from __future__ import annotations

import pytest
import torch
from tiny_checkpoints import CFG, NEGATIVE, PROMPT, SEEDS, SIZE
from tiny_checkpoints import add_model as _add
from tiny_checkpoints import load as _load
from tiny_flow_checkpoints import configs_only, flux_to_bfl, sd3_to_original, single_file

from designerbox.registry.files import ModelFileError


def test_a_transformer_only_flux_file_names_what_to_add(sd_home, tmp_path):
    from safetensors.torch import save_file

    from designerbox.registry.user_checkpoints import add_checkpoint

    flux = tmp_path / "flux1-dev.safetensors"
    save_file({k: torch.zeros(1) for k in ["double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight",
                                           "guidance_in.in_layer.weight"]}, str(flux))
    with pytest.raises(ModelFileError, match=r"holds transformer of flux-dev but not vae, text_encoder, text_encoder_2: "
                                             r"add it with --config FOLDER"):
        add_checkpoint(flux, sd_home, sd_home / "cache")


@pytest.mark.parametrize("which, transformer_only", [("sd3", False), ("flux-dev", True), ("flux-schnell", False)])
def test_a_single_file_gives_the_folders_image(tiny_sd3, tiny_flux, sd_home, tmp_path, capsys, which, transformer_only):
    """SD3 with every network in the file (the transformer's config read from its shapes, the other configs
    and the T5 tokenizer from a folder without weights), FLUX dev as BFL ships it (the transformer alone,
    the rest from the diffusers folder), FLUX schnell as a ComfyUI checkpoint; each draws what its folder does."""
    from designerbox.pipelines.sampling import draw
    from designerbox.registry.discovery import Registry
    from designerbox.registry.families import detect

    folder = tiny_sd3 if which == "sd3" else tiny_flux[which]
    single = single_file(folder, "sd3" if which == "sd3" else "flux", tmp_path / f"{which}.safetensors", transformer_only)
    assert detect(single).id == which
    config = folder if transformer_only else configs_only(folder, tmp_path / "configs")
    report = _add([single, "--config", config, "--id", "single"], capsys)
    _add([folder, "--id", "folder"], capsys)
    manifest = Registry(sd_home).get("single")
    assert report["family"] == which and manifest.files[0].path == str(single.resolve())
    kwargs = dict(width=SIZE, height=SIZE, steps=2, sampler="euler", schedule="simple", seeds=SEEDS,
                  cfg_scale=3.5 if which == "flux-dev" else CFG)
    a = draw(_load("single", sd_home), PROMPT, NEGATIVE, **kwargs)
    b = draw(_load("folder", sd_home), PROMPT, NEGATIVE, **kwargs)
    assert (a * 255).std() > 1 and ((a - b).abs() * 255).max() < 1e-3


def test_a_single_file_without_the_t5_tokenizer_names_what_to_add(tiny_sd3, sd_home, tmp_path):
    from designerbox.registry.user_checkpoints import add_checkpoint

    single = single_file(tiny_sd3, "sd3", tmp_path / "sd3.safetensors")
    with pytest.raises(ModelFileError, match=r"T5's tokenizer.*--config FOLDER.*tokenizer_3/tokenizer\.json"):
        add_checkpoint(single, sd_home, sd_home / "cache")


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_the_full_size_layouts_convert_as_diffusers_does(kind):
    """On the meta device, at the published sizes (SD3 medium; FLUX.1 dev): our test writer's original layout
    is what diffusers' own converter reads back into exactly the model's tensors, the transformer's config
    read from those shapes is the published one, and (FLUX) our any-width converter agrees with diffusers'."""
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import (
        convert_flux_transformer_checkpoint_to_diffusers,
        convert_sd3_transformer_checkpoint_to_diffusers,
    )

    from designerbox.registry.flow_single_file import flux_transformer_from_bfl, transformer_config

    if kind == "sd3":
        config = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24,
                      attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
                      caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=192)
        with torch.device("meta"):
            net = SD3Transformer2DModel(**config)
        original = sd3_to_original(net.state_dict())
        theirs = convert_sd3_transformer_checkpoint_to_diffusers(dict(original))
        ours = theirs
    else:
        config = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                      num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                      guidance_embeds=True, axes_dims_rope=(16, 56, 56))
        with torch.device("meta"):
            net = FluxTransformer2DModel(**config)
        original = flux_to_bfl(net.state_dict())
        theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(original))
        ours = flux_transformer_from_bfl(original)
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in theirs.items()} == expected
    assert {k: tuple(v.shape) for k, v in ours.items()} == expected
    derived = transformer_config("sd3" if kind == "sd3" else "flux-dev", {k: list(v.shape) for k, v in original.items()})
    assert {k: derived[k] for k in config} == {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
