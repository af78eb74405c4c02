"""The text-conditioned GAN: a tiny random-weight generator from a config, in a real model folder,
loaded through the registry, drawn through the one generate path; its training recipe and latent tools."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import designerbox
from designerbox.cli import main
from designerbox.jobs.generate import RequestError, request_from_record
from designerbox.models.gan import Discriminator, Generator
from designerbox.registry.discovery import Registry
from designerbox.registry.loading import load_model
from designerbox.store.png_metadata import read_parameters, read_record
from designerbox.training import data
from designerbox.training.diffaugment import diff_augment
from designerbox.training.model_folder import create_gan_model
from designerbox.training.train_gan import GANTrainConfig, train

TINY_GAN = dict(z_dim=8, w_dim=16, channels=[16, 8, 8])  # 4 -> 8 -> 16 px
TINY_D = (8, 16, 16)
GAN = dict(model="tiny-gan")


def pixels(img) -> np.ndarray:
    return np.asarray(img.convert("RGB")).astype(np.int16)


@pytest.fixture(scope="session")
def tiny_gan_dir(tmp_path_factory):
    return create_gan_model(tmp_path_factory.mktemp("gan") / "tiny-gan", "tiny-gan", TINY_GAN, good_at=["tests"])


@pytest.fixture
def gan_home(home, tiny_gan_dir):
    shutil.copytree(tiny_gan_dir, home / "models" / "tiny-gan")
    return home


@pytest.fixture
def gan_studio(gan_home):
    from designerbox.settings import Settings
    from designerbox.studio import Studio

    return Studio(Settings.from_env())


def test_networks_shapes_and_projection_head():
    g, d = Generator(**TINY_GAN), Discriminator(channels=TINY_D, features=12)
    z, text = torch.randn(3, 8), torch.nn.functional.normalize(torch.randn(3, 384), dim=1)
    x = g(z, text)
    assert x.shape == (3, 3, 16, 16) and g.resolution == 16
    phi = d.features(x)
    assert phi.shape == (3, 12)
    # the projection head: D(x, y) = psi(phi) + <embed(y), phi>, so the caption term is linear in y
    s0, s1, s2 = d.score(phi, text), d.score(phi, -text), d.score(phi, torch.zeros_like(text))
    torch.testing.assert_close(s0 + s1, 2 * s2)
    torch.testing.assert_close(d(x, text), s0)


def test_model_folder_loads_through_the_registry(gan_home, tiny_gan_dir):
    manifest = Registry(gan_home).get("tiny-gan")
    assert manifest.kind == "gan" and manifest.family == "dbx-gan" and manifest.native_size == (16, 16)
    assert [f.path for f in manifest.files] == ["model.safetensors", "config.json"]
    model = load_model(manifest)
    assert model.resolution == 16 and not any(p.requires_grad for p in model.generator.parameters())
    config = json.loads((tiny_gan_dir / "config.json").read_text())
    assert config == {"z_dim": 8, "text_dim": 384, "w_dim": 16, "channels": [16, 8, 8], "convs": 1}


def test_generate_records_and_seeds_reproduce(gan_studio):
    images = designerbox.generate("a red apple", studio=gan_studio, seed=7, batch_size=3, save=False, **GAN)
    assert len(images) == 3 and images[0].image.size == (16, 16)
    r = images[0].record
    assert r["model"]["id"] == "tiny-gan" and r["model"]["family"] == "dbx-gan" and len(r["model"]["sha256"]) == 64
    assert [img.record["seed"] for img in images] == [7, 8, 9]
    assert r["request"]["truncation"] == 1.0  # the manifest's default, recorded
    assert r["request"]["steps"] is None and r["request"]["sampler"] is None and r["request"]["cfg_scale"] is None
    assert r["native_size"] == [16, 16] and r["resized"] is None
    assert pixels(images[0].image).std() > 1 and not np.array_equal(pixels(images[0].image), pixels(images[1].image))
    # the same request and seed give identical pixels; an image of a batch is the image of its seed alone
    again = designerbox.generate("a red apple", studio=gan_studio, seed=8, save=False, **GAN)[0]
    assert np.array_equal(pixels(again.image), pixels(images[1].image))
    # the prompt conditions the image
    other = designerbox.generate("a blue car", studio=gan_studio, seed=7, save=False, **GAN)[0]
    assert not np.array_equal(pixels(other.image), pixels(images[0].image))


def test_recorded_output_slice_of_the_tiny_gan(gan_studio):
    """diffusers-style regression: a 3x3 corner of a fixed-seed image from the seeded tiny generator."""
    img = designerbox.generate("a cat face", studio=gan_studio, seed=0, save=False, **GAN)[0].image
    corner = pixels(img)[:3, :3, 0]
    expected = np.array([[146, 119, 80], [109, 133, 91], [30, 79, 0]])  # recorded with torch 2.13 on this CPU
    assert np.abs(corner - expected).max() <= 1


def test_truncation_is_recorded_and_pulls_to_the_caption_mean(gan_studio, tmp_path):
    half = designerbox.generate("a star", studio=gan_studio, seed=1, truncation=0.5, **GAN)[0]
    full = designerbox.generate("a star", studio=gan_studio, seed=1, truncation=1.0, save=False, **GAN)[0]
    assert half.record["request"]["truncation"] == 0.5
    assert not np.array_equal(pixels(half.image), pixels(full.image))
    path = gan_studio.export([half], tmp_path / "half.png")[0]
    assert "Truncation psi: 0.5" in read_parameters(path) and read_record(path) == half.record
    request, index = request_from_record(read_record(path))
    assert request.truncation == 0.5 and request.steps is None
    assert np.array_equal(pixels(gan_studio.generate(request, save=False)[index].image), pixels(Image.open(path)))
    # psi = 0: every seed gives the caption's mean style, hence one image
    zero = designerbox.generate("a star", studio=gan_studio, seed=1, batch_size=3, truncation=0.0, save=False, **GAN)
    assert all(np.array_equal(pixels(zero[0].image), pixels(z.image)) for z in zero[1:])


@pytest.mark.parametrize("option, value", [("steps", 20), ("sampler", "euler"), ("schedule", "karras"),
                                           ("cfg_scale", 4.0), ("negative_prompt", "blurry")])
def test_options_a_gan_does_not_have_are_errors(gan_studio, option, value):
    with pytest.raises(RequestError, match=rf"is a GAN.*no {option}="):
        designerbox.generate("a cat", studio=gan_studio, save=False, **GAN, **{option: value})


def test_truncation_on_a_diffusion_model_is_an_error(gan_studio):
    with pytest.raises(RequestError, match=r"'tiny-test' is a diffusion model and has no truncation=0.7"):
        designerbox.generate("a cat", studio=gan_studio, save=False, model="tiny-test", truncation=0.7)


def test_sizes_beyond_the_native_one_go_through_fit_to_size(gan_studio):
    img = designerbox.generate("a cat", studio=gan_studio, seed=2, save=False, width=48, height=32, upscaler="none",
                               **GAN)[0]
    assert img.image.size == (48, 32) and img.record["native_size"] == [16, 16]
    assert img.record["resized"].startswith("drawn at 16x16, resized to 32x32 (lanczos), centred on 48x32")


def test_cli_generate_reproduce_and_errors(gan_home, tmp_path, capsys):
    assert main(["generate", "a red apple", "--model", "tiny-gan", "--seed", "4", "--truncation", "0.8",
                 "--quiet", "-o", str(tmp_path / "a.png")]) == 0
    record = read_record(tmp_path / "a.png")
    assert record["model"]["id"] == "tiny-gan" and record["seed"] == 4 and record["request"]["truncation"] == 0.8
    assert main(["generate", "--from", str(tmp_path / "a.png"), "--quiet", "-o", str(tmp_path / "b.png")]) == 0
    assert np.array_equal(pixels(Image.open(tmp_path / "a.png")), pixels(Image.open(tmp_path / "b.png")))
    capsys.readouterr()
    assert main(["generate", "a cat", "--model", "tiny-gan", "--steps", "5", "-o", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert "is a GAN" in err and "steps=5" in err and not (tmp_path / "c.png").exists()
    assert main(["generate", "a cat", "--model", "tiny-gan", "--sampler", "euler", "-o", str(tmp_path / "c.png")]) == 2
    assert "sampler='euler'" in capsys.readouterr().err


def test_gan_interpolate_and_variations(gan_studio, gan_home, tmp_path, capsys):
    single = designerbox.generate("a red apple", studio=gan_studio, seed=3, save=False, **GAN)[0].image
    end = designerbox.generate("a blue car", studio=gan_studio, seed=9, save=False, **GAN)[0].image
    assert main(["gan", "interpolate", "a red apple", "--to", "a blue car", "--seeds", "3", "9", "--frames", "5",
                 "--model", "tiny-gan", "--scale", "1", "-o", str(tmp_path / "strip.png")]) == 0
    strip = pixels(Image.open(tmp_path / "strip.png"))
    assert strip.shape == (16, 5 * 16, 3)
    assert np.abs(strip[:, :16] - pixels(single)).max() <= 1 and np.abs(strip[:, -16:] - pixels(end)).max() <= 1
    record = read_record(tmp_path / "strip.png")
    assert record["tool"] == "gan-interpolate" and record["seeds"] == [3, 9] and record["model"]["id"] == "tiny-gan"
    assert main(["gan", "interpolate", "a red apple", "--model", "tiny-gan", "-o", str(tmp_path / "a.gif")]) == 0
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 2 * 8 - 2 and gif.size == (32, 32)
    # variations of a recorded image: strength 0 repeats it exactly, strength 0.5 moves away
    assert main(["generate", "a cat", "--model", "tiny-gan", "--seed", "5", "--quiet", "-o", str(tmp_path / "c.png")]) == 0
    assert main(["gan", "variations", "--from", str(tmp_path / "c.png"), "-n", "3", "--strength", "0", "--scale", "1",
                 "-o", str(tmp_path / "same.png")]) == 0
    same = pixels(Image.open(tmp_path / "same.png"))
    for i in range(4):
        assert np.abs(same[:, 16 * i:16 * (i + 1)] - pixels(Image.open(tmp_path / "c.png"))).max() <= 1
    assert main(["gan", "variations", "a cat", "--model", "tiny-gan", "--seed", "5", "-n", "3", "--strength", "0.5",
                 "--scale", "1", "-o", str(tmp_path / "moved.png")]) == 0
    moved = pixels(Image.open(tmp_path / "moved.png"))
    assert np.array_equal(moved[:, :16], same[:, :16]) and not np.array_equal(moved[:, 16:32], same[:, 16:32])
    capsys.readouterr()
    assert main(["gan", "variations", "a cat", "--model", "tiny-test", "-o", str(tmp_path / "x.png")]) == 2
    assert "latent tools need a GAN" in capsys.readouterr().err


def test_diffaugment_keeps_shapes_and_gradients():
    x = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_(True)
    gen = torch.Generator().manual_seed(0)
    y = diff_augment(x, "color,translation,cutout", gen)
    assert y.shape == x.shape and not torch.equal(y, x)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # cutout zeroes a square of half the side (a quarter of the pixels, less where it leaves the image)
    c = diff_augment(torch.ones(8, 3, 16, 16), "cutout", gen)
    zeros = (c[:, 0] == 0).float().mean(dim=(1, 2))
    assert (zeros > 0).all() and (zeros <= 0.25).all()
    assert torch.equal(diff_augment(x, "", gen), x)
    with pytest.raises(ValueError, match="valid: color, translation, cutout"):
        diff_augment(x, "flip", gen)


def test_train_resume_export_and_load(dataset, tmp_path, home):
    model_dir = tmp_path / "new-gan"
    cfg = GANTrainConfig(data=str(dataset), model_dir=str(model_dir), run_dir=str(tmp_path / "run"),
                         generator=TINY_GAN, d_channels=TINY_D, d_features=16, resolution=16, batch_size=4,
                         max_steps=2, log_every=1, r1_every=2, samples=2)
    state = train(cfg, log=lambda *_: None)
    assert state["step"] == 2 and state["images_seen"] == 8
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2] and "r1" in log[0]
    assert all(np.isfinite(v) for row in log for v in row.values())
    first = json.loads((model_dir / "manifest.json").read_text())["files"][0]["sha256"]
    assert json.loads((model_dir / "training.json").read_text())["step"] == 2
    assert (tmp_path / "run" / "samples" / "step-0000002.png").exists()

    state = train(GANTrainConfig(**{**cfg.__dict__, "max_steps": 4}), log=lambda *_: None)  # resumes
    assert state["step"] == 4 and len(state["runs"]) == 2 and state["runs"][1]["start_step"] == 2
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["kind"] == "gan" and manifest["id"] == "new-gan" and manifest["files"][0]["sha256"] != first
    # the exported folder loads through the registry and draws
    shutil.copytree(model_dir, home / "models" / "new-gan")
    from designerbox.settings import Settings
    from designerbox.studio import Studio

    img = designerbox.generate("thing 3, emoji", studio=Studio(Settings.from_env()), model="new-gan", seed=0,
                               save=False)[0]
    assert img.image.size == (16, 16) and img.record["model"]["sha256"] == manifest["files"][0]["sha256"]


def test_a_new_run_can_start_from_the_shipped_weights(dataset, tmp_path):
    """What the GPU recipe does (scripts/gpu/train_gan.sh): no run checkpoint travels, so a new run dir
    starts the generator and its EMA from the model folder's weights and the step count from its
    training.json, with a fresh discriminator."""
    from safetensors.torch import load_file

    model_dir = tmp_path / "new-gan"
    cfg = GANTrainConfig(data=str(dataset), model_dir=str(model_dir), run_dir=str(tmp_path / "run-a"),
                         generator=TINY_GAN, d_channels=TINY_D, d_features=16, resolution=16, batch_size=4,
                         max_steps=3, log_every=1, r1_every=2, samples=0)
    train(cfg, log=lambda *_: None)
    shipped = load_file(str(model_dir / "model.safetensors"))
    logs = []
    state = train(GANTrainConfig(**{**cfg.__dict__, "run_dir": str(tmp_path / "run-b"), "max_steps": 4,
                                    "from_weights": True, "lr_g": 0.0, "lr_d": 0.0}), log=logs.append)
    assert any("started the generator from" in str(line) for line in logs)
    assert state["step"] == 4 and state["runs"][-1]["start_step"] == 3 and len(state["runs"]) == 2
    after = load_file(str(model_dir / "model.safetensors"))  # lr 0: the EMA of unchanged weights is the start
    assert all(torch.allclose(after[k].float(), shipped[k].float(), atol=1e-3) for k in shipped)


def test_eval_scores_a_gan_like_a_diffusion_model(gan_home, tmp_path, capsys):
    """`designerbox eval` takes either text-to-image family; the record shows no sampler for a GAN."""
    from designerbox.models.evaluator import EvalEncoder
    from designerbox.training.train_evaluator import export_evaluator

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    meta = [{"source": "noto", "style": "emoji", "label": f"thing {i}", "split": "heldout" if i < 4 else "train",
             "licence": "MIT", "captions": [f"thing {i}, emoji", f"a red thing {i}, emoji", f"thing {i}"]}
            for i in range(10)]
    data.write(tmp_path / "ds", images, meta)
    tiny_eval = dict(image_size=16, channels=[8, 16], blocks=1, groups=4)
    torch.manual_seed(0)
    export_evaluator(EvalEncoder(**tiny_eval), tiny_eval, gan_home / "models" / "tiny-eval", "tiny-eval", {"step": 0})

    code = main(["eval", "tiny-gan", "--n", "2", "--evaluator", "tiny-eval", "--data", str(tmp_path / "ds"), "--json"])
    r = json.loads(capsys.readouterr().out)
    assert code == 0 and r["model"]["id"] == "tiny-gan" and r["model"]["sampler"] is None
    assert r["model"]["size"] == [16, 16] and 0 <= r["prompt_adherence"]["generated"]["top1"] <= 1
    code = main(["eval", "tiny-eval", "--n", "2", "--evaluator", "tiny-eval", "--data", str(tmp_path / "ds")])
    assert code == 2 and "eval needs a text-to-image model (diffusion or gan)" in capsys.readouterr().err


def test_sheet_draws_models_side_by_side(gan_home, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red apple\na cat face\n")
    out = tmp_path / "cmp.png"
    code = main(["sheet", str(prompts), "--models", "tiny-test,tiny-gan", "--columns", "2", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    sheet = Image.open(out)
    assert sheet.width >= 260 + 4 * 128 and sheet.height >= 2 * 128  # 2 prompts x (2 seeds x 2 models)
    code = main(["sheet", str(prompts), "--models", "tiny-test,tiny-gan", "--model", "tiny-gan", "-o", str(out)])
    assert code == 2 and "not both" in capsys.readouterr().err
