"""LoRA files (pipelines/lora.py) on the tiny SD 1.x and SDXL checkpoints: kohya/A1111 LoRA and LoCon
files merged exactly into the weights and taken out again, the <lora:NAME:STRENGTH> tag in a prompt
through the CLI, and errors that name the problem.

The tiny checkpoints are the session fixtures of conftest.py (built from tiny_checkpoints.py).
"""

from __future__ import annotations

import json

import torch
from tiny_checkpoints import PROMPT, SIZE
from tiny_checkpoints import add_model as _add
from tiny_checkpoints import write_lora as _write_lora

def test_lora_merges_exactly_and_comes_out_again(tiny_sd, sd_home, capsys):
    from designerbox.pipelines.lora import set_loras
    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    folder, single, config = tiny_sd
    _add([folder, "--id", "tiny-folder"], capsys)
    model = load_stable_diffusion(Registry(sd_home).get("tiny-folder"), "cpu")
    state = _write_lora(sd_home / "loras" / "style.safetensors")
    q = model.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q
    conv = model.unet.up_blocks[0].resnets[0].conv1
    before_q, before_conv = q.weight.clone(), conv.weight.clone()
    summary = set_loras(model, [(sd_home / "loras" / "style.safetensors", 0.7)])
    assert summary == [{"name": "style", "strength": 0.7, "layers": 4}]
    p = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    expected = before_q + 0.7 * (2.0 / 4) * state[f"{p}.lora_up.weight"] @ state[f"{p}.lora_down.weight"]
    assert torch.allclose(q.weight, expected, atol=1e-6)
    p = "lora_unet_up_blocks_0_resnets_0_conv1"  # a 3x3 convolution (LoCon)
    delta = (state[f"{p}.lora_up.weight"].flatten(1) @ state[f"{p}.lora_down.weight"].flatten(1)).reshape(conv.weight.shape)
    assert torch.allclose(conv.weight, before_conv + 0.7 * 0.5 * delta, atol=1e-6)
    set_loras(model, [])
    assert torch.equal(q.weight, before_q) and torch.equal(conv.weight, before_conv)


def test_lora_tag_in_the_prompt_through_the_cli(tiny_sd, sd_home, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from designerbox.cli import main

    folder, single, config = tiny_sd
    _add([folder, "--id", "tiny-folder"], capsys)
    _write_lora(sd_home / "loras" / "style.safetensors")

    def draw(prompt, name):
        code = main(["generate", prompt, "--model", "tiny-folder", "--steps", "2", "--sampler", "euler",
                     "--size", f"{SIZE}x{SIZE}", "--seed", "3", "-o", str(tmp_path / name), "--json", "--no-gallery"])
        assert code == 0
        out = json.loads(capsys.readouterr().out)[0]
        return np.asarray(Image.open(out["path"])).astype(int), out["record"]

    plain, rec_plain = draw(PROMPT, "a")
    styled, rec = draw(f"{PROMPT} <lora:style:0.8>", "b")
    zero, _ = draw(f"{PROMPT} <lora:style:0>", "c")
    again, _ = draw(PROMPT, "d")  # the LoRA is taken out for the next request
    assert np.abs(styled - plain).max() > 0
    assert np.array_equal(zero, plain) and np.array_equal(again, plain)
    assert rec["conditioning"]["prompt"] == PROMPT and rec["request"]["prompt"].endswith("<lora:style:0.8>")
    assert rec["loras"][0]["name"] == "style" and rec["loras"][0]["strength"] == 0.8
    assert len(rec["loras"][0]["sha256"]) == 64 and rec_plain["loras"] == []


def test_lora_errors_name_the_problem(tiny_sd, sd_home, tmp_path, capsys):
    from designerbox.cli import main

    folder, single, config = tiny_sd
    _add([folder, "--id", "tiny-folder"], capsys)
    _write_lora(sd_home / "loras" / "style.safetensors")
    _write_lora(sd_home / "loras" / "other-family.safetensors",
                layers={"lora_unet_input_blocks_4_1_proj_in": ((32, 32, 1, 1), None)})
    args = ["--model", "tiny-folder", "--steps", "1", "--size", f"{SIZE}x{SIZE}", "-o", str(tmp_path), "--no-gallery"]
    assert main(["generate", "a cat <lora:nope>", *args]) != 0
    err = capsys.readouterr().err
    assert "no LoRA named 'nope'" in err and "other-family, style" in err
    assert main(["generate", "a cat <lora:other-family:1>", *args]) != 0
    assert "does not fit this model" in capsys.readouterr().err
    assert main(["generate", "a cat <lora:../../models/tiny-folder/unet/diffusion_pytorch_model>", *args]) != 0
    assert "is not a LoRA name" in capsys.readouterr().err  # no way out of the loras folder
    assert main(["generate", "a cat <lora:style:strong>", *args]) != 0
    assert "strength must be a number" in capsys.readouterr().err
    assert main(["generate", "a cat <lora:style>", "--steps", "1", "-o", str(tmp_path), "--no-gallery"]) != 0
    assert "work with Stable Diffusion models" in capsys.readouterr().err  # the default model is a pixel model


def test_an_sdxl_lora_with_sgm_block_names_merges(tiny_sdxl, sd_home, capsys):
    """kohya names SDXL's UNet layers by SGM blocks (input_blocks_4_1 = down_blocks.1.attentions.0 with
    two layers per block); text encoder layers as lora_te1_ / lora_te2_."""
    from safetensors.torch import save_file

    from designerbox.pipelines.lora import set_loras
    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    _add([tiny_sdxl[0], "--id", "tiny-xl-folder"], capsys)
    model = load_stable_diffusion(Registry(sd_home).get("tiny-xl-folder"), "cpu")
    g = torch.Generator().manual_seed(0)
    state = {}
    for prefix, (out_ch, in_ch) in {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q": (64, 64),
                                    "lora_unet_middle_block_1_transformer_blocks_0_attn2_to_k": (64, 64),
                                    "lora_unet_output_blocks_0_1_transformer_blocks_0_attn1_to_out_0": (64, 64),
                                    "lora_te1_text_model_encoder_layers_0_self_attn_q_proj": (32, 32),
                                    "lora_te2_text_model_encoder_layers_1_mlp_fc1": (37, 32)}.items():
        state[f"{prefix}.lora_down.weight"] = torch.randn(2, in_ch, generator=g)
        state[f"{prefix}.lora_up.weight"] = torch.randn(out_ch, 2, generator=g)
    path = sd_home / "loras" / "xl-style.safetensors"
    path.parent.mkdir(parents=True)
    save_file(state, str(path))
    q = model.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1.to_q
    before = q.weight.clone()
    assert set_loras(model, [(path, 1.0)]) == [{"name": "xl-style", "strength": 1.0, "layers": 5}]
    p = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"  # no alpha: alpha = rank, scale 1
    assert torch.allclose(q.weight, before + state[f"{p}.lora_up.weight"] @ state[f"{p}.lora_down.weight"], atol=1e-5)
    set_loras(model, [])
    assert torch.equal(q.weight, before)
