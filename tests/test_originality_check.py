"""`designerbox originality IMAGE --against REF`: an image that is a reference image is a copy (exit 1), a
slightly noised one is a copy or close, an image unlike all of them is new; a dataset folder or a plain
folder of images as the reference set; the built-in evaluator dbx-eval-v1."""

import json

import numpy as np
import pytest
from PIL import Image

import designerbox
from designerbox.cli import main
from designerbox.training import data
from designerbox.training.originality import verdict


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DESIGNERBOX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DESIGNERBOX_DEVICE", "cpu")
    return tmp_path


def blocky(rng, low: int, high: int) -> np.ndarray:
    """A 32x32 image of 8x8 random blocks (4x4 pixels each) with levels in [low, high)."""
    return rng.integers(low, high, (8, 8, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)


@pytest.fixture
def refs(env):
    """Six clearly distinct dark images (pairs ~0.16 RMSE apart) as a dataset and as a folder of PNGs, and
    the images to check: one of them, it slightly noised, and a bright image unlike all (~0.7 away)."""
    rng = np.random.default_rng(0)
    images = np.stack([blocky(rng, 0, 100) for _ in range(6)])
    meta = [{"source": "test", "style": "emoji", "split": "train", "licence": "MIT", "captions": [f"thing {i}"]}
            for i in range(6)]
    data.write(env / "ds", images, meta)
    (env / "photos" / "sub").mkdir(parents=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(env / "photos" / ("sub" if i % 2 else "") / f"ref{i}.png")
    (env / "photos" / "broken.jpg").write_bytes(b"not an image")
    noise = rng.integers(-6, 7, images[2].shape)
    checks = {"copy": images[2], "noised": np.clip(images[2] + noise, 0, 255).astype(np.uint8),
              "new": blocky(rng, 200, 256)}
    for name, im in checks.items():
        Image.fromarray(im).save(env / f"{name}.png")
    return env


def test_verdict_rule():
    assert [verdict(r) for r in (0.0, 1.0, 1.01, 2.0, 2.01)] == ["copy", "copy", "close", "close", "new"]


def test_dataset_reference(refs, capsys):
    code = main(["originality", str(refs / "copy.png"), str(refs / "noised.png"), str(refs / "new.png"),
                 "--against", str(refs / "ds"), "--top", "2", "--json"])
    r = json.loads(capsys.readouterr().out)
    assert code == 1 and r["copies"] >= 1 and r["references"] == 6 and r["evaluator"]["id"] == "dbx-eval-v1"
    assert r["unreadable_skipped"] == 0 and r["duplicates_merged"] == 0 and "ratio" in r["rule"]
    pair = r["closest_reference_pair"]
    assert pair["pixel_rmse"] > 0.1 and pair["a"] != pair["b"] and pair["sample"] == 6
    copy, noised, new = r["images"]
    assert copy["verdict"] == "copy" and copy["nearest_pixel_rmse"] < 0.01 and copy["ratio"] < 0.1
    assert copy["by_pixels"][0]["reference"] == "#2 thing 2" and copy["by_features"][0]["reference"] == "#2 thing 2"
    assert copy["by_features"][0]["cosine"] > 0.99
    assert noised["verdict"] in ("copy", "close") and noised["by_pixels"][0]["reference"] == "#2 thing 2"
    assert new["verdict"] == "new" and new["ratio"] > 2
    for im in r["images"]:
        assert len(im["by_pixels"]) == len(im["by_features"]) == 2
        assert im["by_pixels"][0]["rmse"] <= im["by_pixels"][1]["rmse"]
        assert im["by_features"][0]["cosine"] >= im["by_features"][1]["cosine"]

    # all new: exit 0, and the plain text names the rule and the verdict
    assert main(["originality", str(refs / "new.png"), "--against", str(refs / "ds")]) == 0
    out = capsys.readouterr().out
    assert "rule: ratio = nearest reference pixel RMSE" in out and "new.png: NEW" in out


def test_folder_reference_and_api(refs):
    r = designerbox.originality([refs / "copy.png", refs / "new.png"], refs / "photos", top=10)
    assert r["references"] == 6 and r["unreadable_skipped"] == 1
    copy, new = r["images"]
    assert copy["verdict"] == "copy" and copy["by_pixels"][0]["reference"] == "ref2.png"
    assert new["verdict"] == "new" and len(new["by_pixels"]) == 6  # top is capped at the reference count
    assert {m["reference"] for m in new["by_pixels"]} == {f"{'sub/' if i % 2 else ''}ref{i}.png" for i in range(6)}


def test_bad_references(refs, capsys):
    (refs / "empty").mkdir()
    (refs / "empty" / "notes.txt").write_text("no images here")
    for ref, message in ((refs / "empty", "no readable images in"), (refs / "missing", "no reference set at"),
                         (refs / "new.png", "is a file")):
        assert main(["originality", str(refs / "copy.png"), "--against", str(ref)]) == 2
        assert message in capsys.readouterr().err
    assert main(["originality", str(refs / "nope.png"), "--against", str(refs / "ds")]) == 2
    assert "no such image" in capsys.readouterr().err
    (refs / "one").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(refs / "one" / "a.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(refs / "one" / "b.png")  # the same image twice
    assert main(["originality", str(refs / "copy.png"), "--against", str(refs / "one")]) == 2
    assert "needs at least 2" in capsys.readouterr().err
