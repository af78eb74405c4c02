"""The evaluator: encoder shapes, contrastive training and resume, Frechet distance against closed
forms, and `designerbox eval` end to end on the tiny random-weight model with a tiny evaluator."""

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from designerbox.cli import main
from designerbox.models.evaluator import EvalEncoder
from designerbox.registry.discovery import Registry
from designerbox.registry.loading import load_model
from designerbox.training import data
from designerbox.training.evaluate import fd, format_table, frechet_distance, heldout_items, retrieval
from designerbox.training.train_evaluator import EvalTrainConfig, export_evaluator, train

TINY_EVAL = dict(image_size=16, channels=[8, 16], blocks=1, groups=4)
COLOURS = {"red": (220, 30, 30), "green": (30, 160, 40), "blue": (30, 60, 220), "yellow": (240, 210, 20),
           "purple": (130, 40, 170), "orange": (250, 140, 0)}
SHAPES = ("circle", "square", "triangle", "cross")


def draw(shape: str, rgb: tuple, size: int, inset: int) -> np.ndarray:
    img = Image.new("RGB", (size, size), "white")
    d, a, b = ImageDraw.Draw(img), inset, size - 1 - inset
    if shape == "circle":
        d.ellipse([a, a, b, b], fill=rgb)
    elif shape == "square":
        d.rectangle([a, a, b, b], fill=rgb)
    elif shape == "triangle":
        d.polygon([(size // 2, a), (b, b), (a, b)], fill=rgb)
    else:
        d.rectangle([a, size // 2 - 3, b, size // 2 + 3], fill=rgb)
        d.rectangle([size // 2 - 3, a, size // 2 + 3, b], fill=rgb)
    return np.asarray(img)


@pytest.fixture
def shapes(tmp_path):
    """24 coloured shapes, two sizes each, 32x32 on white; 8 concepts held out."""
    images, meta = [], []
    for k, (shape, colour) in enumerate((s, c) for s in SHAPES for c in COLOURS):
        for inset in (3, 8):
            images.append(draw(shape, COLOURS[colour], 32, inset))
            label = f"{colour} {shape}"
            meta.append({"source": "noto", "style": "flat", "label": label, "licence": "MIT",
                         "captions": [f"{label}, flat", f"a {label}, flat", label],
                         "split": "heldout" if k % 3 == 0 else "train"})
    data.write(tmp_path / "shapes", np.stack(images), meta)
    return tmp_path / "shapes"


def test_encoder_unit_vectors_at_any_size():
    torch.manual_seed(0)
    net = EvalEncoder(**TINY_EVAL).eval()
    for shape in [(2, 3, 16, 16), (3, 3, 32, 32), (1, 3, 64, 64), (2, 3, 24, 40), (1, 3, 256, 256)]:
        z = net(torch.rand(shape))
        assert z.shape == (shape[0], 384)
        assert torch.allclose(z.norm(dim=-1), torch.ones(shape[0]), atol=1e-5)
    flat = torch.tensor([0.9, 0.4, 0.1])[None, :, None, None]  # one colour: the same picture at any size
    z = [net(flat.expand(1, 3, s, s)) for s in (16, 40, 256)]
    assert torch.allclose(z[0], z[1], atol=1e-5) and torch.allclose(z[0], z[2], atol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="divisible by groups"):
        EvalEncoder(channels=(10, 20), groups=4)


def test_train_lowers_loss_resumes_exactly_and_exports(shapes, tmp_path):
    cfg = EvalTrainConfig(data=str(shapes), run_dir=str(tmp_path / "run"), model=TINY_EVAL, max_steps=40,
                          decay_steps=40, batch_size=24, lr=3e-3, warmup_steps=5, heldout_n=4, log_every=1, threads=1)
    state = train(EvalTrainConfig(**{**cfg.__dict__, "max_steps": 25}), log=lambda *_: None)  # stops at 25 of 40
    assert state["step"] == 25
    state = train(cfg, log=lambda *_: None)                                                       # resumes to 40
    assert state["step"] == 40 and state["runs"][1]["start_step"] == 25 and state["images_seen"] == 40 * 24
    loss = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(loss) == 40 and np.mean(loss[-5:]) < np.mean(loss[:5]) - 0.3
    assert set(state["heldout_retrieval"]) == {"captions", "top1", "top5"}

    # the same 40 steps in one go give the same weights: the data order, augmentation and optimiser resume
    from safetensors.torch import load_file

    train(EvalTrainConfig(**{**cfg.__dict__, "run_dir": str(tmp_path / "straight")}), log=lambda *_: None)
    resumed, straight = (load_file(str(tmp_path / r / "model.safetensors")) for r in ("run", "straight"))
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)

    with pytest.raises(ValueError, match="another config"):
        train(EvalTrainConfig(**{**cfg.__dict__, "model": {**TINY_EVAL, "blocks": 2}}), log=lambda *_: None)


def test_frechet_distance_closed_forms():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    assert abs(fd(x, x)) < 1e-8
    delta = torch.tensor([0.5, -1.0, 0.0, 2.0, 0.0, 0.25], dtype=torch.float64)
    assert fd(x, x + delta) == pytest.approx(float(delta.pow(2).sum()), rel=1e-9)  # same covariance
    # Gaussians: diagonal covariances, |mu1 - mu2|^2 + sum (sqrt a - sqrt b)^2
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 9.0])
    mu1, mu2 = torch.zeros(3), torch.tensor([1.0, 2.0, 0.0])
    assert frechet_distance(mu1, a.diag(), mu2, b.diag()) == pytest.approx(5 + 1 + 1 + 0, abs=1e-9)
    # C2 = s^2 C1 for a full C1: tr(C1 + s^2 C1 - 2 s C1) = (1 - s)^2 tr(C1)
    c1 = torch.cov(x.T).double()
    assert frechet_distance(mu1.new_zeros(6), c1, mu1.new_zeros(6), 9 * c1) == pytest.approx(4 * float(c1.trace()), rel=1e-8)
    # rank-deficient covariances (fewer samples than dimensions) stay finite and non-negative
    few = torch.randn(5, 32, generator=g, dtype=torch.float64)
    assert 0 <= fd(few, few + 1) < float("inf") and fd(few, few + 1) == pytest.approx(32, rel=1e-6)


def test_retrieval_and_heldout_items(shapes):
    t = torch.nn.functional.normalize(torch.randn(10, 384, generator=torch.Generator().manual_seed(1)), dim=-1)
    assert retrieval(t, t) == {"top1": 1.0, "top5": 1.0}
    assert retrieval(t.roll(1, 0), t)["top1"] == 0.0
    _, meta = data.load(shapes)
    chosen, floor = heldout_items(meta, 4)
    assert len(set(chosen + floor)) == 8 and all(meta[i]["split"] == "heldout" for i in chosen + floor)
    assert len({meta[i]["captions"][0] for i in chosen}) == 4
    with pytest.raises(ValueError, match="between 2 and 4"):
        heldout_items(meta, 5)


def test_eval_command_end_to_end(home, shapes, tmp_path, capsys):
    torch.manual_seed(0)
    export_evaluator(EvalEncoder(**TINY_EVAL), TINY_EVAL, home / "models" / "tiny-eval", "tiny-eval", {"step": 0})
    assert load_model(Registry(home).get("tiny-eval")).image_size == 16  # through the registry, hashes checked

    code = main(["eval", "tiny-test", "--n", "3", "--seed", "5", "--evaluator", "tiny-eval", "--data", str(shapes),
                 "--json"])
    out = capsys.readouterr().out
    assert code == 0
    r = json.loads(out)
    assert r["model"]["id"] == "tiny-test" and r["model"]["size"] == [16, 16] and r["n"] == 3 and r["seed"] == 5
    for who in ("generated", "real_heldout"):
        assert set(r["prompt_adherence"][who]) == {"top1", "top5"}
        assert 0 <= r["prompt_adherence"][who]["top1"] <= r["prompt_adherence"][who]["top5"] <= 1
    # per caption: ranks among the 3 captions, consistent with the totals; per source: the same counts
    per = r["prompt_adherence"]["per_caption"]
    assert len(per) == 3 and all(0 <= p["rank"] < 3 and 0 <= p["real_rank"] < 3 for p in per)
    assert sum(p["rank"] == 0 for p in per) / 3 == pytest.approx(r["prompt_adherence"]["generated"]["top1"], abs=1e-4)
    by_source = r["prompt_adherence"]["by_source"]
    assert sum(v["captions"] for v in by_source.values()) == 3
    for src, v in by_source.items():
        rows = [p for p in per if p["source"] == src]
        assert v["captions"] == len(rows)
        assert v["generated_top1"] == pytest.approx(sum(p["rank"] == 0 for p in rows) / len(rows), abs=1e-4)
    assert r["fd_dbx"]["generated_vs_heldout"] >= 0 and r["fd_dbx"]["heldout_vs_heldout_floor"] >= 0
    for who in ("generated", "real_heldout", "train_pairs"):
        o = r["originality"][who]
        assert -1 <= o["max_cosine"] <= 1 and o["min_pixel_rmse"] >= 0
        assert {"query", "train", "train_index"} <= set(o["closest_by_cosine"]) and "closest_by_pixels" in o
    pair = r["originality"]["train_pairs"]["closest_by_pixels"]
    assert pair["query_index"] != pair["train_index"]  # distinct training images
    assert r["originality"]["train_pairs"]["sample"] == 32
    assert "caption retrieval top-1" in format_table(r)

    # sampling settings other than the model's defaults are used and recorded
    code = main(["eval", "tiny-test", "--n", "3", "--evaluator", "tiny-eval", "--data", str(shapes),
                 "--steps", "3", "--cfg", "2.5", "--sampler", "euler", "--json"])
    m = json.loads(capsys.readouterr().out)["model"]
    assert code == 0 and (m["steps"], m["cfg_scale"], m["sampler"]) == (3, 2.5, "euler")

    code = main(["eval", "tiny-test", "--n", "3", "--evaluator", "tiny-test", "--data", str(shapes)])
    assert code == 2 and "not an evaluator; installed evaluators: dbx-eval-v0, dbx-eval-v1, tiny-eval" in capsys.readouterr().err
    code = main(["eval", "tiny-test", "--n", "9", "--evaluator", "tiny-eval", "--data", str(shapes)])
    assert code == 2 and "between 2 and 4" in capsys.readouterr().err


@pytest.mark.parametrize("model_id", ["dbx-eval-v0", "dbx-eval-v1"])
def test_builtin_evaluator_loads(model_id):
    net = load_model(Registry().get(model_id))
    z = net(torch.ones(2, 3, 256, 256))  # a white page, at an upscaled size
    assert z.shape == (2, 384) and torch.allclose(z.norm(dim=-1), torch.ones(2), atol=1e-4)
