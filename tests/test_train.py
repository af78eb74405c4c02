"""The training recipe on a tiny dataset and the tiny model: steps run, resume continues, export loads.

The tiny dataset is the `dataset` fixture of conftest.py (12 random 32x32 images, one held out)."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from designerbox.registry.discovery import Registry
from designerbox.registry.loading import load_model
from designerbox.training.train_diffusion import TrainConfig, export_from_run, train


def test_train_resume_and_export(dataset, tiny_model_dir, tmp_path, home):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    before = (model_dir / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    cfg = TrainConfig(data=str(dataset), model_dir=str(model_dir), run_dir=str(tmp_path / "run"), minutes=5,
                      max_steps=3, batch_size=4, resolution=16, log_every=1, warmup_steps=2)
    state = train(cfg, log=lambda *_: None)
    assert state["step"] == 3 and state["images_seen"] == 12
    assert (dataset / "text_minilm_pooled.safetensors").exists()  # caption embeddings cached
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3] and all(np.isfinite(row["loss"]) for row in log)

    state = train(TrainConfig(**{**cfg.__dict__, "max_steps": 5}), log=lambda *_: None)  # resumes
    assert state["step"] == 5 and len(state["runs"]) == 2 and state["runs"][1]["start_step"] == 3

    after = (model_dir / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert after != before
    training = json.loads((model_dir / "training.json").read_text())
    assert training["step"] == 5
    # the exported folder loads through the registry with its new hashes
    shutil.rmtree(home / "models" / "tiny-test")
    shutil.copytree(model_dir, home / "models" / "tiny-test")
    model = load_model(Registry(home).get("tiny-test"))
    assert model.prediction == "v"


def test_export_from_run(dataset, tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    cfg = TrainConfig(data=str(dataset), model_dir=str(model_dir), run_dir=str(tmp_path / "run"), minutes=5,
                      max_steps=2, batch_size=4, resolution=16, export=False)
    train(cfg, log=lambda *_: None)
    assert json.loads((model_dir / "manifest.json").read_text())["files"][0]["sha256"] == \
        json.loads((tiny_model_dir / "manifest.json").read_text())["files"][0]["sha256"]
    state = export_from_run(tmp_path / "run", model_dir)
    assert state["step"] == 2
    assert json.loads((model_dir / "manifest.json").read_text())["files"][0]["sha256"] != \
        json.loads((tiny_model_dir / "manifest.json").read_text())["files"][0]["sha256"]


def test_six_bit_packing_round_trips():
    from designerbox.training.shard import pack6, unpack6

    q = np.random.default_rng(0).integers(-31, 32, size=(5, 384)).astype(np.int8)
    packed = pack6(q)
    assert packed.shape == (5, 288) and packed.dtype == np.uint8
    assert np.array_equal(unpack6(packed), q)


def test_shard_round_trip_and_training_from_it(dataset, tiny_model_dir, tmp_path):
    from designerbox.training.shard import load_shard, write_shard
    from designerbox.training.train_diffusion import load_training_set

    info = write_shard(dataset, tmp_path / "shard", resolution=16, log=lambda *_: None)
    assert info["images"] == 11 and info["resolution"] == 16 and info["captions_per_image"] == 3
    images, pooled, empty, _ = load_shard(tmp_path / "shard")
    assert images.shape == (11, 16, 16, 3) and images.dtype == np.uint8 and pooled.shape == (11, 3, 384)
    cfg = TrainConfig(data=str(dataset), model_dir=str(tiny_model_dir), run_dir=str(tmp_path / "r"), resolution=16)
    x_full, pooled_full, empty_full, _ = load_training_set(cfg, torch.device("cpu"), log=lambda *_: None)
    # 6-bit embeddings stay within 1% (cosine) of the float ones; images within rounding
    assert torch.nn.functional.cosine_similarity(pooled, pooled_full, dim=-1).min() > 0.99
    x_shard, _, _, _ = load_training_set(TrainConfig(**{**cfg.__dict__, "data": str(tmp_path / "shard")}),
                                      torch.device("cpu"), log=lambda *_: None)
    assert (x_shard - x_full).abs().max() <= 1 / 127.5 + 1e-6
    assert torch.equal(empty, empty_full)
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    state = train(TrainConfig(data=str(tmp_path / "shard"), model_dir=str(model_dir), run_dir=str(tmp_path / "run"),
                              max_steps=2, batch_size=4, resolution=16), log=lambda *_: None)
    assert state["step"] == 2


def test_resumed_run_draws_what_an_uninterrupted_one_would(dataset, tiny_model_dir, tmp_path):
    """Batches, timesteps and noise are seeded by the step: 2 + 2 steps equal 4 in one call (a resumed
    call once replayed the first call's batches, so the loss fell on them and rose past them)."""
    def run(name, stops):
        model_dir = tmp_path / f"model-{name}"
        shutil.copytree(tiny_model_dir, model_dir)
        cfg = TrainConfig(data=str(dataset), model_dir=str(model_dir), run_dir=str(tmp_path / f"run-{name}"),
                          minutes=5, batch_size=4, resolution=16, log_every=1, warmup_steps=2, export=False)
        for stop in stops:
            train(TrainConfig(**{**cfg.__dict__, "max_steps": stop}), log=lambda *_: None)
        log = (tmp_path / f"run-{name}" / "log.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in log], load_file(str(tmp_path / f"run-{name}" / "model.safetensors"))

    losses_once, weights_once = run("once", [4])
    losses_split, weights_split = run("split", [2, 4])
    assert losses_split == losses_once
    assert all(torch.equal(weights_once[k], weights_split[k]) for k in weights_once)


@pytest.mark.parametrize("mode", ["default", "no-such-mode"])
def test_compiled_training_matches_eager_or_falls_back(dataset, tiny_model_dir, tmp_path, mode):
    """--compile trains the same steps as eager (same batches; losses within bf16 noise); a mode torch.compile
    refuses (or any compiler failure) is logged and the run goes on eager, as the record says."""
    def run(name, compile_mode):
        model_dir = tmp_path / f"model-{name}"
        shutil.copytree(tiny_model_dir, model_dir)
        lines = []
        state = train(TrainConfig(data=str(dataset), model_dir=str(model_dir), run_dir=str(tmp_path / f"run-{name}"),
                                  minutes=60, max_steps=2, batch_size=4, resolution=16, log_every=1, warmup_steps=2,
                                  export=False, compile=compile_mode), log=lines.append)  # compiling takes minutes
        losses = [json.loads(x)["loss"] for x in (tmp_path / f"run-{name}" / "log.jsonl").read_text().splitlines()]
        return state, losses, lines

    _, eager, _ = run("eager", "")
    state, compiled, lines = run("compiled", mode)
    assert state["step"] == 2
    assert state["runs"][-1]["compile"]["mode"] == mode
    if mode == "default":
        assert state["runs"][-1]["compile"]["compiled"] and any("torch.compile (default):" in x for x in lines)
        assert compiled == pytest.approx(eager, rel=0.05)
    else:
        assert not state["runs"][-1]["compile"]["compiled"]
        assert any("failed" in x and "training eager" in x for x in lines)
        assert compiled == eager  # the eager fallback draws the same batches
