"""Growing a pixel UNet with cross-attention (training/grow.py): the grown network draws what the old
one drew, trains on the captions' token states, and generates through the registry (ONNX and torch)."""

import json
import shutil

import numpy as np
import pytest
import torch

from designerbox.pipelines.text_to_image import TOKENS, pad_tokens, uses_tokens
from designerbox.training import data
from designerbox.training.grow import grow
from designerbox.training.train_diffusion import TrainConfig, train


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    meta = [{"source": "noto", "style": "emoji", "split": "train", "licence": "MIT",
             "captions": [f"thing {i}, emoji", f"a red thing {i} with a longer caption, emoji", f"thing {i}"]}
            for i in range(8)]
    data.write(tmp_path / "ds", images, meta)
    return tmp_path / "ds"


def draw(studio, model_id):
    from designerbox import api

    image = api.generate("a red apple", studio=studio, save=False, model=model_id, seed=3, steps=3, width=16,
                         height=16, upscaler="none")[0].image
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_grown_model_draws_what_the_old_one_drew(tiny_model_dir, home, monkeypatch, backend):
    from designerbox.settings import Settings
    from designerbox.studio import Studio

    monkeypatch.setenv("DESIGNERBOX_CPU_BACKEND", backend)
    summary = grow(tiny_model_dir, home / "models" / "tiny-grown", levels=(1,), log=lambda *_: None)
    assert summary["silenced"] > 0 and summary["new"] > summary["silenced"]
    config = json.loads((home / "models" / "tiny-grown" / "unet" / "config.json").read_text())
    assert uses_tokens(config) and config["mid_block_type"] == "UNetMidBlock2DCrossAttn"
    studio = Studio(Settings.from_env())
    assert studio.model("tiny-grown")[1].tokens and not studio.model("tiny-test")[1].tokens
    old, new = draw(studio, "tiny-test"), draw(studio, "tiny-grown")
    assert np.abs(old - new).max() <= 1  # the new branches start silent: the same pixels (float rounding aside)


def test_grow_refuses_bad_requests(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="levels \\[5\\] out of range: this UNet has levels 0..1"):
        grow(tiny_model_dir, tmp_path / "g", levels=(5,))
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="choose a new folder"):
        grow(tiny_model_dir, tmp_path / "exists")


def test_pad_tokens_masks_padding():
    states = torch.zeros(2, 5, 384)
    states[0, :5] = 1
    states[1, :2] = 1
    padded, mask = pad_tokens(states)
    assert padded.shape == (2, TOKENS, 384) and mask.tolist()[1][:3] == [1, 1, 0] and mask.sum().item() == 7


def test_grown_model_trains_on_token_states(dataset, tiny_model_dir, tmp_path, home):
    from designerbox.settings import Settings
    from designerbox.studio import Studio

    model_dir = tmp_path / "tiny-grown"
    grow(tiny_model_dir, model_dir, levels=(1,), log=lambda *_: None)
    cfg = TrainConfig(data=str(dataset), model_dir=str(model_dir), run_dir=str(tmp_path / "run"), minutes=5,
                      max_steps=3, batch_size=4, resolution=16, log_every=1, warmup_steps=1, lr=1e-2)
    state = train(cfg, log=lambda *_: None)
    assert state["step"] == 3
    from safetensors.torch import load_file

    cache = load_file(str(dataset / "text_minilm_tokens.safetensors"))
    lengths = cache["lengths"][cache["index"].long()]                       # (8, 3)
    assert cache["index"].shape == (8, 3) and (lengths[:, 1] > lengths[:, 0]).all()
    assert cache["table"][0, int(cache["lengths"][0]):].abs().sum() == 0     # zero past each caption
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(row["loss"]) for row in log)
    weights = load_file(str(model_dir / "unet" / "diffusion_pytorch_model.safetensors"))
    proj = [k for k in weights if ".attentions." in k and k.endswith("proj_out.weight")]
    assert proj and any(weights[k].abs().sum() > 0 for k in proj)  # the silent branches opened
    shutil.copytree(model_dir, home / "models" / "tiny-grown")
    studio = Studio(Settings.from_env())
    assert draw(studio, "tiny-grown").shape == (16, 16, 3)


def test_token_shard_trains_the_grown_model(dataset, tiny_model_dir, tmp_path):
    """A shard with token ids and the cut-down encoder gives the same conditioning as the dataset folder
    (within the encoder's int8 rounding), and the grown network trains from it; an old pooled-only
    shard is refused by name."""
    from designerbox.training.shard import load_shard, write_shard
    from designerbox.training.train_diffusion import caption_tokens, pooled_captions

    info = write_shard(dataset, tmp_path / "shard", resolution=16, tokens=True, log=lambda *_: None)
    assert info["text"] == "tokens" and "encoder.safetensors" in info["files"]
    images, pooled, empty, tok = load_shard(tmp_path / "shard", tokens=True, log=lambda *_: None)
    meta = [m for m in data.load(dataset)[1] if m["split"] == "train"]
    ref, ref_tok = pooled_captions(dataset, meta, lambda *_: None), caption_tokens(dataset, meta, lambda *_: None)
    assert (pooled * ref["pooled"]).sum(-1).min() > 0.999 and (empty * ref["empty"]).sum() > 0.999
    assert torch.equal(tok["lengths"], ref_tok["lengths"]) and torch.equal(tok["index"], ref_tok["index"])
    err = (tok["table"].float() - ref_tok["table"].float()).norm(dim=-1) / ref_tok["table"].float().norm(dim=-1).clamp(min=1e-6)
    assert err[ref_tok["table"].float().norm(dim=-1) > 0].mean() < 0.05

    model_dir = tmp_path / "tiny-grown"
    grow(tiny_model_dir, model_dir, levels=(1,), log=lambda *_: None)
    cfg = TrainConfig(data=str(tmp_path / "shard"), model_dir=str(model_dir), run_dir=str(tmp_path / "run"),
                      minutes=5, max_steps=2, batch_size=4, resolution=16, warmup_steps=1)
    assert train(cfg, log=lambda *_: None)["step"] == 2

    write_shard(dataset, tmp_path / "pooled-shard", resolution=16, log=lambda *_: None)
    with pytest.raises(ValueError, match="designerbox data shard --tokens"):
        train(TrainConfig(**{**cfg.__dict__, "data": str(tmp_path / "pooled-shard"), "run_dir": str(tmp_path / "r2")}),
              log=lambda *_: None)
