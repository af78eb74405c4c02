"""The dataset builder's parts on small real files laid out like the source packages."""

import json

import numpy as np
import pytest
from PIL import Image

from designerbox.training import data


def rgba(colour, size=32, coverage=0.5) -> Image.Image:
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    side = int(size * coverage ** 0.5)
    img.paste(Image.new("RGBA", (side, side), colour), ((size - side) // 2, (size - side) // 2))
    return img


@pytest.mark.parametrize("colour, name", [
    ((220, 30, 30, 255), "red"), ((250, 200, 20, 255), "yellow"), ((30, 160, 60, 255), "green"),
    ((30, 90, 220, 255), "blue"), ((120, 60, 20, 255), "brown"), ((20, 20, 20, 255), "black"),
    ((245, 245, 245, 255), "white"), ((128, 128, 128, 255), "grey"), ((240, 120, 200, 255), "pink"),
])
def test_main_colour_names(colour, name):
    assert data.main_colour(np.asarray(rgba(colour))) == name


def test_captions_name_thing_style_and_colour():
    assert data.captions_for("red apple", "3d", "red") == ["red apple, 3d", "a red apple, 3d", "red apple"]
    assert data.captions_for("orange", "emoji", "orange")[1] == "an orange, emoji"
    assert data.captions_for("cat face", "flat icon", "yellow")[1] == "a yellow cat face, flat icon"


def test_to_square_keeps_aspect_and_centres():
    tall = Image.new("RGBA", (10, 40), (255, 0, 0, 255))
    sq = data.to_square(tall, 64)
    assert sq.shape == (64, 64, 4)
    cols = np.where(sq[..., 3].max(axis=0) > 0)[0]
    assert 14 <= cols.min() and cols.max() <= 49 and sq[..., 3].max(axis=1).min() > 0
    white = data.on_white(sq)
    assert tuple(white[0, 0]) == (255, 255, 255) and tuple(white[32, 32]) == (255, 0, 0)


def test_split_is_fixed_by_label():
    labels = [f"thing {i}" for i in range(2000)]
    held = [label for label in labels if data.split_of(label) == "heldout"]
    assert 10 < len(held) < 80
    assert held == [label for label in labels if data.split_of(label) == "heldout"]


def test_emoji_datasource_reader_joins_emojibase_labels(tmp_path):
    labels_pkg = tmp_path / "emojibase"
    (labels_pkg / "en").mkdir(parents=True)
    (labels_pkg / "en" / "data.json").write_text(json.dumps([
        {"label": "red apple", "hexcode": "1F34E"}, {"label": "keycap: 3", "hexcode": "0033-FE0F-20E3"}]))
    labels = data.emoji_labels(labels_pkg)
    assert labels == {"1F34E": "red apple", "0033-20E3": "keycap: 3"}
    pkg = tmp_path / "emoji-datasource-google"
    (pkg / "img" / "google" / "64").mkdir(parents=True)
    rgba((220, 30, 30, 255), 64).save(pkg / "img" / "google" / "64" / "1f34e.png")
    (pkg / "emoji.json").write_text(json.dumps([
        {"unified": "1F34E", "image": "1f34e.png"}, {"unified": "1F600", "image": "1f600.png"}]))
    items = list(data.read_emoji_datasource(pkg, labels, "google"))
    assert [(name, label) for name, label, _ in items] == [("1f34e.png", "red apple")]


def test_openclipart_titles_are_cleaned(tmp_path):
    folder = tmp_path / "usr/share/openclipart/svg/food"
    folder.mkdir(parents=True)
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/" width="20" '
           'height="20"><metadata><dc:title>{}</dc:title></metadata><circle cx="10" cy="10" r="9" fill="red"/></svg>')
    (folder / "apple_01.svg").write_text(svg.format("Red Apple 01"))
    (folder / "pear_02.svg").write_text(svg.format("part of the flat icon collection wed aug 25 2004"))
    items = sorted((label, img.size) for _, label, img in data.read_openclipart(tmp_path, 32))
    assert [label for label, _ in items] == ["pear", "red apple"]


def test_write_is_atomic_and_loads_back(tmp_path):
    images = np.full((3, 8, 8, 3), 255, np.uint8)
    meta = [{"source": "noto", "style": "emoji", "split": "train", "licence": "Apache-2.0", "captions": ["x"]}] * 3
    stats = data.write(tmp_path / "ds", images, meta)
    assert stats["images"] == 3 and stats["per_source"] == {"noto": 3}
    stats = data.write(tmp_path / "ds", images[:2], meta[:2])  # replacing an existing dataset
    loaded, loaded_meta = data.load(tmp_path / "ds")
    assert loaded.shape == (2, 8, 8, 3) and len(loaded_meta) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_unknown_source_lists_valid(tmp_path):
    with pytest.raises(ValueError, match="valid: .*fluent3d"):
        data.build(tmp_path / "out", tmp_path / "cache", sources=("openmoji",))
