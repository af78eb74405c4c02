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
    expect(page.locator("#model")).to_have_value("dbx-base-v1")       # the default
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
    assert job["source"] == "web" and job["request"] == {"prompt": "a purple umbrella", "model": "dbx-base-v1",
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
