"""run_tool and `designerbox tool`: options and presets at the boundary, gallery records, atomic
files and zips, bad input named."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageDraw

from designerbox.cli import main
from designerbox.jobs.tool import ToolRequestError, export, run_tool
from designerbox.presets import UnknownPresetError
from designerbox.store.png_metadata import read_record
from designerbox.tools.registry import TOOL_MODULES, UnknownToolError, get_tool


@pytest.fixture
def photo(tmp_path):
    im = Image.new("RGB", (480, 360), (205, 205, 210))
    ImageDraw.Draw(im).rounded_rectangle((260, 80, 400, 300), 30, fill=(30, 90, 200))
    path = tmp_path / "mug.jpg"
    im.save(path, quality=92)
    return path


def test_every_preset_validates_and_tools_are_listed():
    for name in TOOL_MODULES:
        tool = get_tool(name)
        assert tool.presets(), name
        for pid in tool.presets():
            tool.resolve(preset=pid)
    with pytest.raises(UnknownToolError, match="valid tools: product, social"):
        get_tool("headshots")
    with pytest.raises(UnknownPresetError, match="valid presets: amazon, etsy, shopify, ebay"):
        get_tool("product").resolve(preset="walmart")


def test_run_tool_records_like_a_generation(photo, studio):
    outs = run_tool("product", [photo], {"shadow": 0.2}, "ebay", studio=studio)
    (o,) = outs
    assert o.name == "ebay" and o.image.size == (1600, 1600)
    r = o.record
    assert r["task"] == "tool" and r["tool"] == {"name": "product", "version": "1.0", "output": "ebay", "preset": "ebay"}
    assert r["options"]["shadow"] == 0.2 and r["options"]["width"] == 1600 and r["request"]["options"] == {"shadow": 0.2}
    import hashlib

    assert r["input"]["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest() and r["input"]["file"] == "mug.jpg"
    assert r["model"]["sha256"] == get_tool("product").sha256() and r["model"]["id"] == "tool:product"
    assert set(r["timings"]) == {"load_s", "tool_s", "total_s"} and r["details"]["fill"] > 0.8
    assert {"numpy", "opencv", "pillow", "designerbox"} <= set(r["versions"])
    row = studio.gallery.get(o.id)
    assert row.model_id == "tool:product" and row.record == r
    assert read_record(studio.gallery.file(row)) == r


def test_bad_inputs_and_requests(tmp_path, studio, photo):
    (tmp_path / "a.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"a\.txt is not an image"):
        run_tool("social", [tmp_path / "a.txt"], studio=studio, save=False)
    with pytest.raises(ToolRequestError, match="needs at least one input image or a prompt"):
        run_tool("social", [], studio=studio)
    with pytest.raises(ToolRequestError, match="not both"):
        run_tool("social", [photo], {"prompt": "an apple"}, studio=studio)


def test_social_from_a_prompt_draws_first(studio):
    outs = run_tool("social", None, {"prompt": "a red apple", "model": "tiny-test", "seed": 3,
                                     "sizes": ["x-post", "instagram-story"]}, studio=studio)
    assert [o.image.size for o in outs] == [(1600, 900), (1080, 1920)]
    src = outs[0].record["input"]
    assert src["prompt"] == "a red apple" and src["seed"] == 3 and src["model"] == "tiny-test"
    assert studio.gallery.get(src["generated"]).model_id == "tiny-test"  # the drawn image is in the gallery too


def test_export_folder_png_and_zip(tmp_path, photo, studio):
    outs = run_tool("social", [photo], preset="instagram", studio=studio, save=False)
    paths = export(outs, tmp_path / "z", as_zip=True)
    assert paths == [tmp_path / "z" / "mug-social-instagram.zip"]
    with zipfile.ZipFile(paths[0]) as z:
        assert z.namelist() == ["mug-social-instagram-post.png", "mug-social-instagram-portrait.png",
                                "mug-social-instagram-story.png"]
        assert Image.open(z.open("mug-social-instagram-story.png")).size == (1080, 1920)
    assert not list((tmp_path / "z").glob(".*tmp"))  # no temporary file left behind
    files = export(outs, tmp_path / "f")
    assert [p.name for p in files] == ["mug-social-instagram-post.png", "mug-social-instagram-portrait.png",
                                       "mug-social-instagram-story.png"]
    with pytest.raises(ToolRequestError, match="3 outputs cannot go to one file"):
        export(outs, tmp_path / "one.png")


def test_cli(tmp_path, photo, home, capsys):
    assert main(["tool", "list"]) == 0
    listing = capsys.readouterr().out
    assert "product 1.0" in listing and "amazon, etsy, shopify, ebay" in listing and "social 1.0" in listing
    out = tmp_path / "out"
    assert main(["tool", "product", "--preset", "etsy", str(photo), "-o", str(out), "--set", "background=gradient",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    (path,) = result["paths"]
    assert Image.open(path).size == (2700, 2025) and read_record(path)["options"]["background"] == "gradient"
    assert main(["tool", "social", str(photo), "--set", "sizes=x-post,tiktok", "--zip", "-o", str(out / "s.zip")]) == 0
    assert zipfile.ZipFile(out / "s.zip").namelist() == ["mug-social-x-post.png", "mug-social-tiktok.png"]
    capsys.readouterr()
    assert main(["tool", "social", str(photo), "--set", "fit=squash"]) == 2
    assert "fit: Input should be 'auto', 'crop', 'pad' or 'outpaint'" in capsys.readouterr().err
    assert main(["tool", "product", str(photo), "--prompt", "x"]) == 2
    assert "does not take a prompt" in capsys.readouterr().err
    assert main(["tool", "product", "--set", "oops"]) == 2
    assert "--set takes KEY=VALUE" in capsys.readouterr().err
