import pytest

from designerbox import presets


def test_styles_and_sizes_load_and_validate():
    styles, sizes = presets.styles(), presets.sizes()
    for required in ("3d", "flat", "outline", "clip-art", "photo", "watercolor", "pixel-art"):
        assert required in styles
    assert (sizes["instagram-post"].width, sizes["instagram-post"].height) == (1080, 1080)
    assert (sizes["instagram-story"].width, sizes["instagram-story"].height) == (1080, 1920)
    assert (sizes["x-post"].width, sizes["x-post"].height) == (1600, 900)
    assert (sizes["linkedin-post"].width, sizes["linkedin-post"].height) == (1200, 627)
    assert (sizes["youtube-thumbnail"].width, sizes["youtube-thumbnail"].height) == (1280, 720)
    assert (sizes["pinterest-pin"].width, sizes["pinterest-pin"].height) == (1000, 1500)


def test_style_applies_template_and_negative():
    prompt, negative = presets.get_style("3d").apply("a red apple", "blurry")
    assert prompt == "a red apple, 3d"
    assert negative.startswith("blurry, ") and "flat" in negative


def test_unknown_ids_list_valid_ones():
    with pytest.raises(presets.UnknownPresetError, match="valid styles: none, 3d"):
        presets.get_style("baroque")
    with pytest.raises(presets.UnknownPresetError, match="instagram-post"):
        presets.get_size("myspace")


def test_template_without_slot_is_rejected():
    with pytest.raises(ValueError, match=r"must contain \{prompt\}"):
        presets.StylePreset(id="x", name="x", prompt="no slot")
