"""`designerbox verify` / designerbox.verify: an image drawn again from its record, compared with the file,
and what changed in the recipe since (tiny random-weight model, real PNG files)."""

import json

import numpy as np
import pytest
from PIL import Image

import designerbox
from designerbox.cli import main
from designerbox.store.png_metadata import png_bytes, read_record

FAST = ["--model", "tiny-test", "--steps", "3", "--seed", "4"]


def draw(capsys, tmp_path, name="a.png"):
    assert main(["generate", "a yellow star", *FAST, "-o", str(tmp_path / name), "--quiet"]) == 0
    capsys.readouterr()
    return tmp_path / name


def rewrite(path, pixels=None, record=None):
    """The PNG again with other pixels and/or another record (as an edit after drawing would)."""
    with Image.open(path) as im:
        image = im.convert("RGB")
    image = Image.fromarray(pixels) if pixels is not None else image
    path.write_bytes(png_bytes(image, record or read_record(path)))


def test_a_fresh_image_replays_identically(home, tmp_path, capsys):
    path = draw(capsys, tmp_path)
    assert main(["verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert "identical: the replay gives the same pixels" in out and "since it was drawn" not in out
    report = designerbox.verify(path)  # the Python API gives the same report
    assert report["identical"] and report["max_abs_diff"] == 0 and report["recipe_changes"] == []
    assert report["model"] == "tiny-test" and report["seed"] == 4


def test_edited_pixels_are_found_and_measured(home, tmp_path, capsys):
    path = draw(capsys, tmp_path)
    pixels = np.asarray(Image.open(path).convert("RGB")).copy()
    pixels[3, 5] = (pixels[3, 5].astype(int) + [40, 0, 0]) % 256  # one value changed by 40 (or 216 wrapped)
    rewrite(path, pixels=pixels)
    assert main(["verify", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["identical"] and report["values_differing"] == 1
    assert report["max_abs_diff"] in (40, 216) and report["values"] == pixels.size
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"differs: 1 of {pixels.size} values" in out and "edited after it was drawn" in out


def test_recipe_changes_are_named(home, tmp_path, capsys):
    path = draw(capsys, tmp_path)
    record = read_record(path)
    record["versions"]["torch"] = "1.13.1"
    record["model"]["sha256"] = "0" * 64
    record["device"] = "cuda:0"
    rewrite(path, record=record)
    assert main(["verify", str(path)]) == 0  # the pixels still replay; the report says what differs
    out = capsys.readouterr().out
    assert "torch 1.13.1 recorded" in out and "weights sha256 000000000000 recorded" in out
    assert "device cuda:0 recorded, cpu now" in out


def test_bad_inputs_are_clear_errors(home, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:  # argparse: an empty path is refused before any work
        main(["verify", ""])
    assert exit_.value.code == 2 and "an empty path was given" in capsys.readouterr().err
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert main(["verify", str(plain)]) == 2
    assert "carries no DesignerBox record" in capsys.readouterr().err
    path = draw(capsys, tmp_path)
    record = read_record(path)
    record["request"]["model"] = "gone-model"
    rewrite(path, record=record)
    assert main(["verify", str(path)]) == 2
    err = capsys.readouterr().err
    assert "gone-model" in err and "tiny-test" in err  # the installed models are named
