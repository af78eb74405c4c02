"""The web page in a real browser: Playwright driving Debian's chromium against a real server.
Type a prompt, generate, see the image (and the live progress), find it in the gallery, reuse its
settings. Skipped, saying why, where chromium or playwright is missing (`apt-get install chromium`)."""

import json
import shutil

import httpx
import pytest

from designerbox.server.app import create_app
from server_util import ThreadServer, settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (in the dev extra)")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="Debian's chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ThreadServer(create_app(settings(tmp_path_factory.mktemp("browser-home")))) as s:
        yield s


@pytest.fixture
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(server.url + "/")
        yield page
        browser.close()
        assert errors == []  # no JavaScript errors on the page


def test_type_a_prompt_generate_see_it_and_find_it_in_the_gallery(page, server):
    expect = sync_api.expect
    models = httpx.get(f"{server.url}/api/v1/models", params={"text_to_image": "true"}).json()["models"]
    expect(page.locator("#model option")).to_have_count(len(models))  # the text-to-image models
    expect(page.locator("#model")).to_have_value("dbx-base-v2")       # the default
    expect(page.locator("#model-info")).to_contain_text("good at emoji")
    page.fill("#prompt", "a purple umbrella")
    page.select_option("#style", "flat")
    page.fill("#steps", "12")
    page.fill("#seed", "77")
    page.fill("#batch", "2")
    page.click("#generate-button")
    expect(page.locator("#status")).to_have_text("done: 2 image(s)", timeout=60_000)
    cards = page.locator("#results .card")
    expect(cards).to_have_count(2)
    first = cards.first.locator("img")
    expect(first).to_have_js_property("complete", True)
    assert first.evaluate("img => img.naturalWidth") == 256                 # the model's default size
    expect(cards.first).to_contain_text("a purple umbrella")
    job = httpx.get(f"{server.url}/api/v1/jobs", params={"state": "succeeded"}).json()["jobs"][0]
    assert job["source"] == "web" and job["request"] == {"prompt": "a purple umbrella", "model": "dbx-base-v2",
                                                         "batch_size": 2, "style": "flat", "seed": 77, "steps": 12}

    page.click("#tab-gallery")
    page.fill("#search", "UMBRELLA")
    page.click("#gallery-form button[type=submit]")
    found = page.locator("#gallery-grid .card")
    expect(found).to_have_count(2)
    expect(found.first).to_contain_text("a purple umbrella")
    with page.expect_download() as download:
        found.first.locator("a", has_text="Download").click()
    assert download.value.suggested_filename.endswith(".png")
    page.fill("#search", "no such prompt")
    page.click("#gallery-form button[type=submit]")
    expect(page.locator("#gallery-grid")).to_have_text("no images yet")

    page.fill("#search", "umbrella")
    page.click("#gallery-form button[type=submit]")
    found.last.locator("button", has_text="Reuse settings").click()      # back to Generate, settings filled in
    expect(page.locator("#generate")).to_be_visible()
    expect(page.locator("#prompt")).to_have_value("a purple umbrella")
    expect(page.locator("#style")).to_have_value("flat")
    expect(page.locator("#steps")).to_have_value("12")
    assert page.input_value("#seed") in ("77", "78")


def test_a_gan_hides_sampling_options_and_errors_are_shown(page):
    expect = sync_api.expect
    page.select_option("#model", "dbx-gan-v0")
    expect(page.locator("#model-info")).to_contain_text("a GAN")
    expect(page.locator("#model-info")).to_contain_text("Licence: MIT License (MIT); commercial use: yes")
    expect(page.locator("#steps")).to_be_hidden()
    page.fill("#prompt", "a red kite")
    page.select_option("#size", "instagram-post")
    page.click("#generate-button")
    expect(page.locator("#status")).to_have_text("done: 1 image(s)", timeout=60_000)
    # a bad request: the server's message, naming the valid range, shown on the page
    page.select_option("#model", "dbx-base-v1")
    page.evaluate("document.getElementById('batch').removeAttribute('max')")
    page.fill("#batch", "40")
    page.click("#generate-button")
    expect(page.locator("#status")).to_contain_text("less than or equal to 16")
    expect(page.locator("#status")).to_have_class("error")
    assert json.loads(page.evaluate("JSON.stringify(requestFromForm())"))["batch_size"] == 40


def test_run_the_social_tool_and_find_its_outputs_in_the_gallery(page, server, tmp_path):
    """Tools tab: pick the social tool, upload skimage's astronaut, pick a preset, run, see the outputs."""
    expect = sync_api.expect
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    Image.fromarray(data.astronaut()).resize((160, 160)).save(tmp_path / "astronaut.png")
    page.click("#tab-tools")
    names = [t["name"] for t in httpx.get(f"{server.url}/api/v1/tools").json()]
    expect(page.locator("#tool option")).to_have_count(len(names))     # every tool of the registry
    page.select_option("#tool", "social")
    expect(page.locator("#tool-prompt-label")).to_be_visible()         # social can draw its input from a prompt
    page.select_option("#tool-preset", "x")                            # X: post and header
    page.set_input_files("#tool-files", str(tmp_path / "astronaut.png"))
    page.locator("#tool-options-box summary").click()
    page.select_option("#tool-options [data-option=fit]", '"pad"')
    page.click("#tool-button")
    expect(page.locator("#tool-status")).to_have_text("done: 2 output(s)", timeout=60_000)
    cards = page.locator("#tool-results .card")
    expect(cards).to_have_count(2)
    expect(cards.first.locator("img")).to_have_js_property("complete", True)
    widths = sorted(cards.nth(i).locator("img").evaluate("img => img.naturalWidth") for i in range(2))
    assert widths == [1500, 1600]                                       # x-header 1500x500, x-post 1600x900
    job = httpx.get(f"{server.url}/api/v1/jobs", params={"state": "succeeded"}).json()["jobs"][0]
    assert job["kind"] == "tool" and job["source"] == "web" and job["request"]["preset"] == "x"
    assert job["request"]["options"] == {"fit": "pad"} and job["request"]["inputs"][0]["name"] == "astronaut.png"

    page.click("#tab-gallery")
    page.select_option("#gallery-model", "tool:social")
    page.click("#gallery-form button[type=submit]")
    found = page.locator("#gallery-grid .card")
    expect(found).to_have_count(2)
    found.first.locator("button", has_text="Reuse settings").click()    # back to Tools, preset and options set
    expect(page.locator("#tools")).to_be_visible()
    expect(page.locator("#tool-preset")).to_have_value("x")
    expect(page.locator("#tool-options [data-option=fit]")).to_have_value('"pad"')


def test_models_tab_draws_a_side_by_side_grid(page, server):
    """Models tab: one prompt and seed on dbx-base-v1 and dbx-gan-v0, one job per model, a 2-cell grid."""
    expect = sync_api.expect
    page.click("#tab-models")
    for box in page.locator("#compare-models input").all():
        box.set_checked(box.get_attribute("value") in ("dbx-base-v1", "dbx-gan-v0"))
    page.fill("#compare-prompt", "a green cactus")
    page.fill("#compare-seed", "1234")
    page.fill("#compare-steps", "6")
    page.click("#compare-button")
    expect(page.locator("#compare-status")).to_have_text("done: 2 model(s)", timeout=90_000)
    cells = page.locator("#compare-grid .card")
    expect(cells).to_have_count(2)
    base, gan = cells.nth(0), cells.nth(1)
    expect(base.locator("h3")).to_have_text("dbx-base-v1")
    expect(gan.locator("h3")).to_have_text("dbx-gan-v0")
    expect(base.locator(".settings")).to_contain_text("seed 1234")
    expect(base.locator(".settings")).to_contain_text("6 steps")
    expect(gan.locator(".settings")).to_contain_text("seed 1234")
    expect(gan.locator(".settings")).to_contain_text("truncation")
    for cell in (base, gan):
        expect(cell.locator("img")).to_have_js_property("complete", True)
        assert cell.locator("img").evaluate("img => img.naturalWidth") > 0
    jobs = httpx.get(f"{server.url}/api/v1/jobs", params={"limit": 2}).json()["jobs"]
    requests = sorted((j["request"] for j in jobs), key=lambda r: r["model"])
    assert requests == [{"prompt": "a green cactus", "model": "dbx-base-v1", "seed": 1234, "steps": 6},
                        {"prompt": "a green cactus", "model": "dbx-gan-v0", "seed": 1234}]


def test_marketing_with_a_brand_kit_added_on_the_page(page, server, tmp_path):
    """Tools tab, marketing: add a brand kit (colours, font, logo upload), it is picked, run with it."""
    expect = sync_api.expect
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    Image.fromarray(data.coffee()).resize((200, 150)).save(tmp_path / "coffee.png")
    Image.new("RGB", (40, 40), (20, 200, 60)).save(tmp_path / "logo.png")
    page.click("#tab-tools")
    page.select_option("#tool", "social")
    expect(page.locator("#tool-brand-box")).to_be_hidden()             # only tools with a brand option
    page.select_option("#tool", "marketing")
    expect(page.locator("#tool-brand-box")).to_be_visible()
    page.locator("#brand-add summary").click()
    page.fill("#brand-name", "Roastery")
    page.fill("#brand-primary", "#c81e1e")
    page.select_option("#brand-headline", "dejavu-serif-bold")
    page.set_input_files("#brand-logo-file", str(tmp_path / "logo.png"))
    page.click("#brand-save")
    expect(page.locator("#brand-status")).to_have_text("saved brand kit Roastery")
    expect(page.locator("#tool-brand")).to_have_value("Roastery")      # the new kit is picked
    expect(page.locator("#tool-brand-logo")).to_be_visible()
    page.select_option("#tool-preset", "banner")
    page.set_input_files("#tool-files", str(tmp_path / "coffee.png"))
    page.locator("#tool-options-box summary").click()
    page.fill("#tool-options [data-option=headline]", "Fresh roast")
    page.click("#tool-button")
    expect(page.locator("#tool-status")).to_have_text("done: 1 output(s)", timeout=60_000)
    job = httpx.get(f"{server.url}/api/v1/jobs", params={"state": "succeeded"}).json()["jobs"][0]
    brand = job["request"]["options"]["brand"]
    assert brand["name"] == "Roastery" and brand["colours"]["primary"] == "#C81E1E"
    assert brand["fonts"]["headline"] == "dejavu-serif-bold" and set(brand["logo"]) == {"sha256", "bytes"}


def test_verify_an_image_from_the_gallery(page, server):
    expect = sync_api.expect
    job = httpx.post(f"{server.url}/api/v1/generations",
                     json={"prompt": "a teal kite to verify", "steps": 2, "width": 32, "height": 32}).json()
    for _ in range(600):
        if httpx.get(f"{server.url}/api/v1/jobs/{job['id']}").json()["state"] == "succeeded":
            break
        page.wait_for_timeout(100)
    page.click("#tab-gallery")
    page.fill("#search", "teal kite")
    page.click("#gallery-form button[type=submit]")
    card = page.locator("#gallery-grid .card")
    expect(card).to_have_count(1)
    card.locator("button", has_text="Verify").click()
    expect(card.locator(".verify")).to_have_text("identical: the replay gives the same pixels", timeout=60_000)
    assert httpx.get(f"{server.url}/api/v1/jobs").json()["jobs"][0]["kind"] == "verify"
