"""The marketing tool: WCAG ratios on known pairs, the text read back from the output by OCR
(rapidocr-onnxruntime), text kept inside the safe zone, contrast fixes measured and recorded, a
headline that cannot fit refused naming the limit; brand kits per user, and the CLI end to end."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage import data

from designerbox.cli import main
from designerbox.store.brands import BrandError, BrandStore, UnknownBrandError
from designerbox.store.png_metadata import read_record
from designerbox.tools import contrast
from designerbox.tools.marketing import BrandKit, TextFitError, run
from designerbox.tools.registry import get_tool

TEXT = {"headline": "Reach for the stars", "subline": "Space camp opens on 1 July", "cta": "Book now"}
TOOL = get_tool("marketing")


@pytest.fixture(scope="module")
def astronaut():
    return Image.fromarray(data.astronaut()).resize((256, 256), Image.LANCZOS)


@pytest.fixture(scope="module")
def ocr():
    from rapidocr_onnxruntime import RapidOCR  # the dev install has it (Makefile: pip install --no-deps)

    return RapidOCR()


def logo_file(path):
    im = Image.new("RGBA", (300, 120), (0, 0, 0, 0))
    ImageDraw.Draw(im).ellipse((0, 0, 120, 120), fill="#F2C14E")
    ImageDraw.Draw(im).rectangle((140, 30, 290, 90), fill="#0B6E4F")
    im.save(path)
    return path


def squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def test_wcag_ratio_on_known_pairs():
    assert contrast.contrast_ratio("#000000", "#FFFFFF") == pytest.approx(21.0)
    assert contrast.contrast_ratio("#FFFFFF", "#000000") == pytest.approx(21.0)  # order does not matter
    assert contrast.contrast_ratio("#3A7BD5", "#3A7BD5") == pytest.approx(1.0)
    # published values (WebAIM's checker): the lightest grey that passes AA on white, and its neighbour
    assert contrast.contrast_ratio("#767676", "#FFFFFF") == pytest.approx(4.54, abs=0.005)
    assert contrast.contrast_ratio("#777777", "#FFFFFF") == pytest.approx(4.48, abs=0.005)
    assert contrast.contrast_ratio("#FF0000", "#FFFFFF") == pytest.approx(4.00, abs=0.005)
    assert contrast.contrast_ratio("#0000FF", "#FFFFFF") == pytest.approx(8.59, abs=0.005)
    assert float(contrast.relative_luminance((128, 128, 128))) == pytest.approx(0.2159, abs=1e-4)
    # over pixels: a flat background gives the flat ratio; the 5th percentile decides over a mixed one
    flat = np.full((10, 10, 3), 255, np.uint8)
    assert contrast.ratio_over("#000000", flat) == pytest.approx(21.0)
    mixed = flat.copy()
    mixed[:2] = 0  # a fifth of the pixels black: black text there has ratio 1
    assert contrast.ratio_over("#000000", mixed) == pytest.approx(1.0)
    # WCAG's large text: 24 px, or 18.66 px bold
    assert contrast.required(24, bold=False) == 3.0 and contrast.required(23, bold=False) == 4.5
    assert contrast.required(19, bold=True) == 3.0 and contrast.required(18, bold=True) == 4.5
    assert contrast.required(40, bold=True, body=True) == 4.5
    with pytest.raises(ValueError, match="#RRGGBB"):
        contrast.hex_rgb("red")


@pytest.mark.parametrize("preset", ["square-post", "banner"])
def test_ocr_reads_the_headline_and_call_to_action(preset, astronaut, ocr):
    out = run(astronaut, TOOL.resolve(TEXT, preset))[0]
    found, _ = ocr(np.asarray(out.image))
    read = squash("".join(t for _, t, _ in found))
    assert squash(TEXT["headline"]) in read, read
    assert squash(TEXT["cta"]) in read, read
    # every box the OCR found lies inside the safe zone (its detector pads boxes by ~15% of their height)
    x0, y0, x1, y1 = out.details["safe_zone"]
    for quad, text, _ in found:
        q = np.asarray(quad)
        tol = max(4.0, 0.2 * (q[:, 1].max() - q[:, 1].min()))
        assert q[:, 0].min() >= x0 - tol and q[:, 0].max() <= x1 + tol, (text, q)
        assert q[:, 1].min() >= y0 - tol and q[:, 1].max() <= y1 + tol, (text, q)


@pytest.mark.parametrize("preset", list(TOOL.presets()))
def test_every_template_keeps_its_text_inside_the_safe_zone(preset, astronaut):
    out = run(astronaut, TOOL.resolve(TEXT, preset))[0]
    d = out.details
    opts = TOOL.resolve(preset=preset)
    assert out.image.size == (opts.width, opts.height) == tuple(d["size"])
    x0, y0, x1, y1 = d["safe_zone"]
    roles = {b["role"] for b in d["text_boxes"]}
    assert {"headline", "cta"} <= roles and ("subline" in roles) == opts.show_subline
    assert d["inside_safe_zone"]
    for b in d["text_boxes"]:
        bx0, by0, bx1, by1 = b["box"]
        assert x0 <= bx0 < bx1 <= x1 and y0 <= by0 < by1 <= y1, b
    assert x0 <= d["cta"]["box"][0] and d["cta"]["box"][2] <= x1 and d["cta"]["box"][3] <= y1
    # every line reads: its measured ratio meets its requirement, the button's label too
    assert all(r["ratio"] >= r["required"] for r in d["contrast"]), d["contrast"]
    assert d["cta"]["ratio"] >= d["cta"]["required"]
    assert d["cta"]["ratio"] == pytest.approx(contrast.contrast_ratio(d["cta"]["colour"], d["cta"]["fill"]), abs=0.01)


def test_margins_of_a_flat_surface_stay_clean(astronaut):
    """Outside the hero and the safe zone, the banner is its surface colour, pixel for pixel."""
    opts = TOOL.resolve(TEXT, "banner")
    out = run(astronaut, opts)[0]
    a = np.asarray(out.image)
    surface = contrast.hex_rgb(opts.brand.colours.primary)
    x0, y0, x1, y1 = out.details["safe_zone"]
    hero_x0 = round(opts.hero_box[0] * opts.width)
    margin = np.zeros(a.shape[:2], bool)
    margin[:y0] = margin[y1:] = True
    margin[:, :x0] = True
    margin[:, hero_x0:] = False
    assert (a[margin] == surface).all()


def test_a_transparent_hero_stands_on_the_surface_colour():
    cut = Image.new("RGBA", (400, 300), (0, 0, 0, 0))
    ImageDraw.Draw(cut).rounded_rectangle((150, 80, 250, 220), 12, fill=(200, 40, 30, 255))
    opts = TOOL.resolve(TEXT, "banner")
    out = run(cut, opts)[0]
    a = np.asarray(out.image)
    assert tuple(a[10, opts.width - 10]) == contrast.hex_rgb(opts.brand.colours.primary)  # not black
    x0, y0, x1, y1 = out.details["hero"]["subject_box"]
    assert 125 <= x0 and x1 <= 275 and 55 <= y0 and y1 <= 245  # the box (150..250, 80..220) is the subject


def test_a_headline_too_long_is_shrunk_then_refused(astronaut):
    longer = run(astronaut, TOOL.resolve(dict(TEXT, headline="Reach for the stars with our summer space camp"),
                                         "square-post"))[0]
    sizes = longer.details["sizes_px"]
    assert any("shrunk" in n for n in longer.details["notes"])
    assert round(0.045 * 1080) <= sizes["headline"] < round(0.095 * 1080)
    with pytest.raises(TextFitError, match=r"smallest headline size \(49 px\).*at most 3 fit"):
        run(astronaut, TOOL.resolve(dict(TEXT, headline=" ".join(["stars"] * 30)), "square-post"))
    with pytest.raises(TextFitError, match=r"smallest headline size \(14 px\)"):
        run(astronaut, TOOL.resolve(dict(TEXT, headline="Supercalifragilisticexpialidocious"), "ad-160x600"))
    with pytest.raises(ValueError, match="needs a headline"):
        run(astronaut, TOOL.resolve({}, "square-post"))


def test_failing_brand_colours_are_fixed_and_measured(astronaut):
    # on a flat surface: a pale grey text colour on white switches to the kit colour that reads
    pale = BrandKit(colours={"text": "#CCCCCC", "background": "#FFFFFF", "primary": "#2347B8"})
    out = run(astronaut, TOOL.resolve(dict(TEXT, brand=pale.model_dump()), "ad-300x250"))[0]
    (fix,) = out.details["fixes"]
    assert fix["fix"] == "text colour" and fix["from"] == "#CCCCCC" and fix["to"] != "#CCCCCC"
    row = out.details["contrast"][0]
    assert row["colour"] == fix["to"] and row["ratio"] == pytest.approx(contrast.contrast_ratio(fix["to"], "#FFFFFF"),
                                                                        abs=0.01)
    # over a white hero, white text gets a scrim, opaque enough for every line (4.5 for the subline)
    white = Image.new("RGB", (256, 256), "white")
    out = run(white, TOOL.resolve(dict(TEXT, scrim="auto"), "square-post"))[0]
    (fix,) = out.details["fixes"]
    assert fix["fix"] == "scrim" and 0.35 <= fix["opacity"] <= 0.95
    assert all(r["passes"] and r["colour"] == "#FFFFFF" for r in out.details["contrast"])
    # measured again on the output, between the glyphs: the shade under the subline reads at 4.5
    sub = next(b for b in out.details["text_boxes"] if b["role"] == "subline")["box"]
    under = np.asarray(out.image)[sub[1]:sub[3], sub[0]:sub[2]].reshape(-1, 3)
    shade = under[under.sum(axis=1).argsort()[len(under) // 4]]  # a background pixel, not a glyph
    assert contrast.contrast_ratio("#FFFFFF", shade) >= 4.5
    # no scrim allowed: the text colour switches instead
    out = run(white, TOOL.resolve(dict(TEXT, scrim="never"), "square-post"))[0]
    assert [f["fix"] for f in out.details["fixes"]] == ["text colour", "text colour"]
    assert all(r["passes"] for r in out.details["contrast"])


def test_the_logo_keeps_clear_of_the_text(tmp_path, astronaut):
    kit = BrandKit(name="acme", logo=str(logo_file(tmp_path / "logo.png")))
    for preset in ("story", "flyer"):
        out = run(astronaut, TOOL.resolve(dict(TEXT, brand=kit.model_dump()), preset))[0]
        lx0, ly0, lx1, ly1 = out.details["logo_box"]
        x0, y0, x1, y1 = out.details["safe_zone"]
        assert x0 <= lx0 and y0 <= ly0 and lx1 <= x1 and ly1 <= y1
        for b in out.details["text_boxes"] + [{"box": out.details["cta"]["box"]}]:
            bx0, by0, bx1, by1 = b["box"]
            assert bx1 <= lx0 or bx0 >= lx1 or by1 <= ly0 or by0 >= ly1, b
        a = np.asarray(out.image)
        (x, y), (w, h) = out.details["logo"]["xy"], out.details["logo"]["size"]
        disc = a[y + h // 2 - 5:y + h // 2 + 5, x + h // 2 - 5:x + h // 2 + 5].astype(int)
        assert (np.abs(disc - (0xF2, 0xC1, 0x4E)).max(axis=2) < 12).all()  # the logo's yellow disc is drawn there
    # a white logo on the white surface of the flyer gets a plate that sets it off (>= 3:1), inside the safe zone
    white = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    ImageDraw.Draw(white).rectangle((10, 10, 190, 90), fill="#FFFFFF")
    white.save(tmp_path / "white.png")
    url = "data:image/png;base64," + base64.b64encode((tmp_path / "white.png").read_bytes()).decode()
    kit = BrandKit(name="acme", logo=url)  # as a data URL, the way the REST API sends it
    out = run(astronaut, TOOL.resolve(dict(TEXT, brand=kit.model_dump()), "flyer"))[0]
    logo = out.details["logo"]
    assert logo["ratio"] == pytest.approx(1.0) and logo["plate"] == "#17213A" and logo["plate_ratio"] >= 3
    px0, py0, px1, py1 = logo["box"]
    x0, y0, x1, y1 = out.details["safe_zone"]
    assert x0 <= px0 and y0 <= py0 and px1 <= x1 and py1 <= y1
    a = np.asarray(out.image)
    assert tuple(a[py1 - 3, (px0 + px1) // 2]) == contrast.hex_rgb("#17213A")  # the plate, under the white logo


def test_brand_kits_are_kept_per_user(tmp_path):
    store = BrandStore(tmp_path / "brands.sqlite", tmp_path / "logos")
    kit = BrandKit(name="acme", colours={"primary": "#0B6E4F"}).model_dump()
    logo = logo_file(tmp_path / "logo.png").read_bytes()
    store.put("ana", "acme", kit, logo)
    store.put("bob", "acme", dict(kit, colours=dict(kit["colours"], primary="#AA0000")))
    a, b = store.get("ana", "acme"), store.get("bob", "acme")
    assert a["colours"]["primary"] == "#0B6E4F" and b["colours"]["primary"] == "#AA0000"
    assert open(a["logo"], "rb").read() == logo and b["logo"] is None
    assert BrandKit(**a).name == "acme"  # a stored kit is a valid kit again
    with pytest.raises(BrandError, match="already exists"):
        store.put("ana", "acme", kit)
    store.put("ana", "acme", dict(kit, colours=dict(kit["colours"], primary="#123456")), replace=True)
    assert store.get("ana", "acme")["colours"]["primary"] == "#123456"
    assert [k["name"] for k in store.list("ana")] == ["acme"] and store.list("carl") == []
    with pytest.raises(UnknownBrandError, match="brand kits: none"):
        store.get("carl", "acme")
    with pytest.raises(BrandError, match="not valid"):
        store.put("ana", "../x", kit)
    store.delete("bob", "acme")
    assert store.list("bob") == []


def test_cli_brand_then_tool(home, tmp_path, capsys):
    hero = tmp_path / "astronaut.jpg"
    Image.fromarray(data.astronaut()).resize((256, 256)).save(hero, quality=90)
    logo = logo_file(tmp_path / "logo.png")
    assert main(["brand", "add", "acme", "--primary", "#0B6E4F", "--background", "#F6F1E7", "--logo", str(logo)]) == 0
    assert main(["brand", "add", "bad", "--primary", "green"]) == 2
    assert "#RRGGBB" in capsys.readouterr().err
    assert main(["brand", "show", "acme", "--json"]) == 0
    assert '"#0B6E4F"' in capsys.readouterr().out
    out = tmp_path / "banner.png"
    assert main(["tool", "marketing", str(hero), "--brand", "acme", "--preset", "banner", "--set", "headline=Grow with us",
                 "--set", "cta=Join today", "-o", str(out), "--no-gallery"]) == 0
    record = read_record(out)
    assert record["tool"]["name"] == "marketing" and record["details"]["brand"] == "acme"
    assert record["options"]["brand"]["colours"]["primary"] == "#0B6E4F" and record["details"]["logo_box"]
    assert record["details"]["fonts"]["headline"]["licence"].startswith("Bitstream Vera")
    assert main(["tool", "marketing", str(hero), "--brand", "nope", "--set", "headline=x", "-o", str(out)]) == 2
    assert "no brand kit named 'nope'" in capsys.readouterr().err


def test_a_drawn_hero(studio):
    from designerbox.jobs.tool import run_tool

    (o,) = run_tool("marketing", None, dict(TEXT, prompt="a red apple", model="tiny-test", seed=2), "ad-300x250",
                    studio=studio, save=False)
    assert o.image.size == (300, 250) and o.record["input"]["prompt"] == "a red apple"
    assert o.record["input"]["model"] == "tiny-test" and o.record["details"]["inside_safe_zone"]
