"""A1111 prompt emphasis, BREAK and long prompts (pipelines/prompt_weights.py), on the real CLIP
tokenizer and a tiny random-weight CLIP text encoder and SD UNet."""

from __future__ import annotations

import pytest
import torch

from designerbox.pipelines.prompt_weights import CHUNK, parse_emphasis, token_chunks

TINY_CLIP = dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                 max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=32)
LONG = ", ".join(f"detail number {i}" for i in range(40))  # 40 x 4 tokens - 1 comma... about 159 tokens


@pytest.mark.parametrize("text, expected", [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a [cat] on a (mat:1.5)", [("a ", 1.0), ("cat", 1 / 1.1), (" on a ", 1.0), ("mat", 1.5)]),
    ("((a:1.3)) b", [("a", 1.3 * 1.1), (" b", 1.0)]),
    ("(sky:0.5) BREAK sea", [("sky", 0.5), ("BREAK", -1.0), ("sea", 1.0)]),
    ("ratio 3:2) and a stray ]", [("ratio 3:2) and a stray ]", 1.0)]),
])
def test_parse_emphasis(text, expected):
    got = parse_emphasis(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


@pytest.fixture(scope="module")
def tokenizer(clip_cache):
    from designerbox.registry.clip_tokenizer import clip_tokenizer

    return clip_tokenizer(clip_cache)


def test_chunks_hold_75_tokens_between_bos_and_eos(tokenizer):
    chunks = token_chunks(tokenizer, LONG)
    n_tokens = len(tokenizer(LONG, add_special_tokens=False).input_ids)
    assert n_tokens > 2 * CHUNK and len(chunks) == 3
    for ids, weights in chunks:
        assert len(ids) == len(weights) == 77
        assert ids[0] == tokenizer.bos_token_id and tokenizer.eos_token_id in ids[1:]
    # every token of the prompt appears once, in order, across the chunks
    body = [t for ids, _ in chunks for t in ids[1:] if t not in (tokenizer.bos_token_id, tokenizer.eos_token_id)]
    assert body == tokenizer(LONG, add_special_tokens=False).input_ids


def test_break_starts_a_new_chunk_and_weights_follow_tokens(tokenizer):
    chunks = token_chunks(tokenizer, "a (red:1.5) apple BREAK a [green] leaf")
    assert len(chunks) == 2
    first_ids, first_w = chunks[0]
    red = tokenizer("red", add_special_tokens=False).input_ids[0]
    assert first_w[first_ids.index(red)] == 1.5 and first_w[0] == 1.0
    second_ids, second_w = chunks[1]
    green = tokenizer("green", add_special_tokens=False).input_ids[0]
    assert second_w[second_ids.index(green)] == pytest.approx(1 / 1.1)


@pytest.fixture(scope="module")
def tiny_sd(tokenizer):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from designerbox.pipelines.stable_diffusion import LatentDiffusion
    from designerbox.samplers.discrete import alphas_cumprod

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=32).eval()
    vae = AutoencoderKL(block_out_channels=(32, 64), latent_channels=4, layers_per_block=1, norm_num_groups=32,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2).eval()
    text = CLIPTextModel(CLIPTextConfig(**TINY_CLIP)).eval()
    for name, module in text.named_modules():  # a trained CLIP's last LayerNorm has a bias: states with a mean
        if name.endswith("final_layer_norm"):
            module.bias.data.normal_(0.1, 0.05)
    return LatentDiffusion(unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer,
                           alphas_cumprod=alphas_cumprod("scaled_linear", 1000, 0.00085, 0.012).float(),
                           prediction="eps", device=torch.device("cpu"))


def test_a_plain_prompt_encodes_exactly_as_before(tiny_sd, tokenizer):
    prompts = ["a photo of a cat", ""]
    ids = tokenizer(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        plain = tiny_sd.text_encoder(ids)[0]
    assert torch.equal(tiny_sd.encode_prompt(prompts), plain)


def test_long_prompts_and_their_negative_get_the_same_number_of_chunks(tiny_sd):
    states = tiny_sd.encode_prompt([LONG, "blurry"])
    assert states.shape == (2, 3 * 77, 32)
    # the negative prompt's extra chunks are encodings of the empty prompt
    empty = tiny_sd.encode_prompt([""])
    assert torch.equal(states[1, 77:154], empty[0]) and torch.equal(states[1, 154:], empty[0])


def test_emphasis_scales_the_token_and_keeps_the_chunk_mean(tiny_sd, tokenizer):
    plain, weighted = tiny_sd.encode_prompt(["a red apple"])[0], tiny_sd.encode_prompt(["a (red:1.5) apple"])[0]
    red = token_chunks(tokenizer, "a red apple")[0][0].index(tokenizer("red", add_special_tokens=False).input_ids[0])
    assert weighted.mean().item() == pytest.approx(plain.mean().item(), rel=1e-5)
    ratio = weighted / plain  # one scale for the whole chunk, 1.5x more on the emphasised token
    others = torch.cat([ratio[:red], ratio[red + 1:]])
    assert torch.allclose(others, others.flatten()[0].expand_as(others), rtol=1e-4)
    assert torch.allclose(ratio[red], 1.5 * others.flatten()[0].expand_as(ratio[red]), rtol=1e-4)


def test_a_long_weighted_prompt_draws(tiny_sd):
    from designerbox.pipelines.stable_diffusion import sd_text_to_image

    kwargs = dict(width=16, height=16, steps=2, sampler="euler", schedule="karras", cfg_scale=5.0, seeds=[1])
    a = sd_text_to_image(tiny_sd, LONG + ", (red:1.4)", "[blurry]", **kwargs)
    b = sd_text_to_image(tiny_sd, LONG + ", red", "blurry", **kwargs)
    assert a.shape == b.shape == (1, 3, 16, 16) and torch.isfinite(a).all()
    assert not torch.equal(a, b)
