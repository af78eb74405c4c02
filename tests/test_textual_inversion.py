"""Textual-inversion embeddings (pipelines/textual_inversion.py) on the tiny SD 1.x and SDXL models.

The exact check: an embedding whose vectors are the token-table rows of the words "red dog" must make
"a photo of reddog" encode to exactly the states of "a photo of red dog" (the encoder runs on the
vectors at those positions), in the prompt and in the negative prompt, and for SDXL's two encoders
and its pooled projection too. Through the Studio (one loaded model, several requests): a named
embedding changes the image, one not named changes nothing, and the next request is clean again.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

PROMPT, NEGATIVE = "a photo of a cat", "blurry"
SIZE = 32


def _add(args, capsys):
    from designerbox.cli import main

    assert main(["models", "add", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _load(home, source, model_id, capsys):
    from designerbox.registry.discovery import Registry
    from designerbox.registry.user_checkpoints import load_stable_diffusion

    _add([source, "--id", model_id], capsys)
    return load_stable_diffusion(Registry(home).get(model_id), "cpu")


def _rows(encoder, tokenizer, words: str) -> torch.Tensor:
    """The token-table rows of `words`, (n, D): what an embedding standing for them holds."""
    ids = tokenizer(words, add_special_tokens=False).input_ids
    return encoder.get_input_embeddings().weight[ids].detach().clone()


def _save(path, tensors: dict):
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def test_an_embedding_stands_for_its_vectors(tiny_sd, sd_home, capsys):
    from designerbox.pipelines.prompt_weights import token_chunks
    from designerbox.pipelines.textual_inversion import ExtendedTokenEmbedding, set_embeddings

    model = _load(sd_home, tiny_sd[0], "tiny-folder", capsys)
    plain_table = model.text_encoder.get_input_embeddings()
    vectors = _rows(model.text_encoder, model.tokenizer, "red dog")  # (2, 32): a two-vector embedding
    path = _save(sd_home / "embeddings" / "reddog.safetensors", {"emb_params": vectors})  # A1111's format
    as_text = model.encode_prompt(["a photo of reddog"])  # not applied: BPE pieces of the word
    assert set_embeddings(model, [("reddog", path)]) == [{"name": "reddog", "vectors": 2}]
    ids = model.embedding_tokens["reddog"]
    assert ids == [49408, 49409]  # past the vocabulary; the tokenizer itself is unchanged
    assert len(model.tokenizer) == 49408
    assert torch.equal(model.text_encoder.get_input_embeddings()(torch.tensor(ids)), vectors)
    chunk = token_chunks(model.tokenizer, "a photo of (RedDog:1.2)", model.embedding_tokens)[0]
    assert chunk[0][4:6] == ids and chunk[1][4:6] == [1.2, 1.2]  # case-insensitive; weighted like a word
    # the encoder runs on the vectors at those positions: the same states as the words themselves
    with_embedding = model.encode_prompt(["a photo of reddog", "blurry, reddog"])
    words = model.encode_prompt(["a photo of red dog", "blurry, red dog"])
    assert torch.allclose(with_embedding, words, atol=1e-6)
    assert (with_embedding[0] - as_text[0]).abs().max() > 1e-3
    # a word that only contains the name is not the name
    assert token_chunks(model.tokenizer, "reddogs", model.embedding_tokens)[0][0][1] < 49408
    # taken out again: the plain table, the plain encoding
    assert set_embeddings(model, []) == [] and model.embedding_tokens == {}
    assert model.text_encoder.get_input_embeddings() is plain_table
    assert not any(isinstance(m, ExtendedTokenEmbedding) for m in model.text_encoder.modules())
    assert torch.equal(model.encode_prompt(["a photo of reddog"]), as_text)


def test_an_embedding_is_kept_in_one_chunk(tiny_sd, sd_home, capsys):
    from designerbox.pipelines.prompt_weights import token_chunks

    model = _load(sd_home, tiny_sd[0], "tiny-folder", capsys)
    tokens = {"style": [49408, 49409, 49410]}
    chunks = token_chunks(model.tokenizer, "cat " * 74 + "style", tokens)  # 74 + 3 > 75: style starts chunk 2
    assert len(chunks) == 2 and chunks[0][0][1:75] == [2368] * 74 and chunks[1][0][1:4] == tokens["style"]


def test_an_embedding_changes_the_image_only_when_named(tiny_sd, sd_home, capsys):
    """One Studio, one loaded model, request after request: the prompt naming the embedding (or the
    negative prompt naming it, its common use) draws another image than the same words without the
    file; a request that names none draws exactly the plain image, before and after."""
    from designerbox.jobs.schema import GenerationRequest
    from designerbox.registry.files import file_sha256
    from designerbox.settings import Settings
    from designerbox.studio import Studio

    _add([tiny_sd[0], "--id", "tiny-folder"], capsys)
    studio = Studio(Settings.from_env())

    def draw(prompt, negative=NEGATIVE):
        req = GenerationRequest(prompt=prompt, negative_prompt=negative, model="tiny-folder", width=SIZE,
                                height=SIZE, steps=2, sampler="euler", seed=3)
        (img,) = studio.generate(req, save=False)
        return np.asarray(img.image).astype(int), img.record

    plain, record = draw(PROMPT)
    assert record["embeddings"] == []
    g = torch.Generator().manual_seed(0)
    path = _save(sd_home / "embeddings" / "mystyle.safetensors", {"emb_params": torch.randn(2, 32, generator=g)})
    unnamed, record = draw(PROMPT)
    assert np.array_equal(unnamed, plain) and record["embeddings"] == []
    named, record = draw(f"{PROMPT}, mystyle")
    assert record["embeddings"] == [{"name": "mystyle", "vectors": 2, "sha256": file_sha256(path)}]
    assert record["conditioning"]["prompt"] == f"{PROMPT}, mystyle"
    in_negative, record_neg = draw(PROMPT, negative=f"{NEGATIVE}, mystyle")
    assert record_neg["embeddings"][0]["name"] == "mystyle"
    again, record = draw(PROMPT)  # taken out again
    assert np.array_equal(again, plain) and record["embeddings"] == []
    path.rename(path.with_suffix(".off"))  # the same words as plain text
    named_as_text, _ = draw(f"{PROMPT}, mystyle")
    negative_as_text, _ = draw(PROMPT, negative=f"{NEGATIVE}, mystyle")
    assert np.abs(named - named_as_text).max() > 0 and np.abs(in_negative - negative_as_text).max() > 0
    assert np.abs(in_negative - plain).max() > 0


def test_embedding_errors_name_the_problem(tiny_sd, sd_home, capsys):
    from designerbox.pipelines.textual_inversion import EmbeddingError, set_embeddings

    model = _load(sd_home, tiny_sd[0], "tiny-folder", capsys)
    folder = sd_home / "embeddings"
    wide = _save(folder / "wide.safetensors", {"emb_params": torch.zeros(1, 48)})
    with pytest.raises(EmbeddingError, match=r"'wide' has vectors of width 48.*text_encoder takes width 32"):
        set_embeddings(model, [("wide", wide)])
    xl = _save(folder / "xl.safetensors", {"clip_l": torch.zeros(1, 32), "clip_g": torch.zeros(1, 32)})
    with pytest.raises(EmbeddingError, match=r"'xl' is made for SDXL.*one text encoder"):
        set_embeddings(model, [("xl", xl)])
    odd = _save(folder / "odd.safetensors", {"a": torch.zeros(1, 32), "b": torch.zeros(1, 32)})
    with pytest.raises(EmbeddingError, match=r"not a textual-inversion file.*\['a', 'b'\]"):
        set_embeddings(model, [("odd", odd)])
    assert model.embedding_tokens == {}  # a failed request leaves the plain model
    # through the CLI: the error names both widths, and the command fails without a traceback
    from designerbox.cli import main

    code = main(["generate", "a wide cat", "--model", "tiny-folder", "--steps", "1", "--size", f"{SIZE}x{SIZE}",
                 "-o", str(sd_home / "out"), "--no-gallery"])
    assert code != 0 and "width 48" in capsys.readouterr().err


def test_sdxl_embedding_with_clip_l_and_clip_g(tiny_sdxl, sd_home, capsys):
    """SDXL's format gives each encoder its own vectors; both token states and the pooled projection
    equal those of the words. The text encoders' configs carry the published SDXL ids (eos_token_id 2,
    with which transformers pools at the largest id, an embedding's): the pooled state must still be
    the EOS's."""
    import shutil

    from designerbox.pipelines.textual_inversion import EmbeddingError, set_embeddings

    folder = sd_home.parent / "tiny-xl-published-ids"
    shutil.copytree(tiny_sdxl[0], folder)
    for name in ("text_encoder", "text_encoder_2"):
        config = folder / name / "config.json"
        config.write_text(json.dumps(json.loads(config.read_text()) | {"bos_token_id": 0, "eos_token_id": 2,
                                                                        "pad_token_id": 1}))
    model = _load(sd_home, folder, "tiny-xl-folder", capsys)
    l_rows = _rows(model.text_encoder, model.tokenizer, "red dog")
    g_rows = _rows(model.text_encoder_2, model.tokenizer_2, "red dog")
    path = _save(sd_home / "embeddings" / "reddog.safetensors", {"clip_l": l_rows, "clip_g": g_rows})
    words = model.encode_prompt(["a photo of red dog", "blurry"])
    assert set_embeddings(model, [("reddog", path)]) == [{"name": "reddog", "vectors": 2}]
    context, pooled = model.encode_prompt(["a photo of reddog", "blurry"])
    assert torch.allclose(context, words[0], atol=1e-5) and torch.allclose(pooled, words[1], atol=1e-5)
    one = _save(sd_home / "embeddings" / "one.safetensors", {"emb_params": torch.zeros(1, 32)})
    with pytest.raises(EmbeddingError, match=r"one-encoder model.*clip_l \(768\) and clip_g \(1280\)"):
        set_embeddings(model, [("one", one)])
