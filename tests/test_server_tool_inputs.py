"""Images inside a tool job's options (the style tool's style_image, a marketing brand kit's logo) over REST,
through the real app, its worker thread and SQLite queue: at submit each data URL is checked as an upload,
stored once under gallery/inputs/ab/<sha256> and queued as {"sha256", "bytes"}; the worker hands the tool the
file, so the output is the one the tool draws from the data URL itself (the behaviour before files)."""

import base64
import dataclasses
import hashlib
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from designerbox.jobs.tool import run_tool
from designerbox.server.app import create_app
from designerbox.server.tool_jobs import ToolJobRequest, store_input
from server_util import settings, wait_job

SMALL = 4096  # bytes: a job's JSON with its option images by reference (the images are ~20-40 KB)


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def photo(name: str, side: int) -> bytes:
    data = pytest.importorskip("skimage.data")
    return png(Image.fromarray(getattr(data, name)()).resize((side, side), Image.LANCZOS))


def ref(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def pixels(client, image_id: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(client.get(f"/api/v1/images/{image_id}.png").content)))


def stored(client) -> set[str]:
    return {p.name for p in (client.app.state.settings.gallery_root / "inputs").glob("*/*")}


@pytest.fixture(scope="module")
def astronaut() -> bytes:
    return photo("astronaut", 96)


@pytest.fixture(scope="module")
def coffee() -> bytes:
    return photo("coffee", 128)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    home = tmp_path_factory.mktemp("tool-inputs-home")
    app = create_app(dataclasses.replace(settings(home), max_image_bytes=200_000))
    with TestClient(app) as c:
        yield c


def test_a_style_picture_is_a_stored_file_and_draws_as_before(client, astronaut, coffee):
    options = {"method": "image", "style_image": data_url(coffee)}
    r = client.post("/api/v1/tools/style", json={"inputs": [{"name": "astronaut.png", "data": data_url(astronaut)}],
                                                 "options": options})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["request"]["options"] == {"method": "image", "style_image": ref(coffee)}
    assert "data:" not in r.text and len(r.content) < SMALL
    root = client.app.state.settings.gallery_root
    sha = ref(coffee)["sha256"]
    assert (root / "inputs" / sha[:2] / sha).read_bytes() == coffee
    done = wait_job(client, job["id"], timeout=300)
    assert done["state"] == "succeeded", done["error"]
    # the stored row, the status and the listing carry the reference, not the picture
    row = client.app.state.queue.get(job["id"])
    assert row.request["options"]["style_image"] == ref(coffee) and len(json.dumps(row.request)) < SMALL
    status = client.get(f"/api/v1/jobs/{job['id']}")
    assert "data:" not in status.text and len(status.content) < SMALL
    listing = client.get("/api/v1/jobs")
    assert job["id"] in listing.text and "data:" not in listing.text and len(listing.content) < 2 * SMALL
    # the same pixels as the tool run on the data URL itself (what the worker ran before option files)
    (image_id,) = done["images"]
    before = run_tool("style", [("astronaut.png", astronaut)], options, studio=client.app.state.studio, save=False)
    assert np.array_equal(pixels(client, image_id), np.asarray(before[0].image))
    original = np.asarray(Image.open(io.BytesIO(astronaut)), np.float32)
    assert np.abs(pixels(client, image_id).astype(np.float32) - original).mean() > 10   # restyled, not copied
    # the record names the picture by reference: no payload, no server folder
    info = client.get(f"/api/v1/images/{image_id}")
    rec = info.json()["record"]
    assert rec["request"]["options"]["style_image"] == ref(coffee) and rec["details"]["style_image"] == ref(coffee)
    assert str(root) not in info.text and "data:" not in info.text


def test_a_brand_logo_is_stored_once_and_drawn(client, astronaut):
    logo = png(Image.new("RGB", (40, 40), (20, 200, 60)))
    options = {"headline": "Fresh roast", "width": 320, "height": 320,
               "brand": {"name": "Shop", "colours": {"primary": "#C81E1E", "background": "#FFFFFF"},
                         "logo": data_url(logo)}}
    body = {"inputs": [data_url(astronaut)], "options": options}
    first = client.post("/api/v1/tools/marketing", json=body)
    assert first.status_code == 202, first.text
    assert first.json()["request"]["options"]["brand"]["logo"] == ref(logo) and len(first.content) < SMALL
    files = stored(client)
    assert ref(logo)["sha256"] in files
    again = client.post("/api/v1/tools/marketing", json=body)  # the same logo (and hero): no new file
    assert again.status_code == 202 and again.json()["request"]["options"] == first.json()["request"]["options"]
    assert stored(client) == files
    done = wait_job(client, first.json()["id"], timeout=300)
    assert done["state"] == "succeeded", done["error"]
    (image_id,) = done["images"]
    before = run_tool("marketing", [("upload", astronaut)], options, studio=client.app.state.studio, save=False)
    assert np.array_equal(pixels(client, image_id), np.asarray(before[0].image))
    rec = client.get(f"/api/v1/images/{image_id}").json()["record"]
    x0, y0, x1, y1 = rec["details"]["logo_box"]
    corner = pixels(client, image_id)[y0:y1, x0:x1, :3].reshape(-1, 3).astype(int)
    assert ((corner[:, 1] > 150) & (corner[:, 0] < 80)).mean() > 0.3   # the logo's green, in its box
    assert wait_job(client, again.json()["id"], timeout=300)["state"] == "succeeded"


def test_bad_option_images_are_refused_at_submit(client, astronaut):
    one = {"inputs": [data_url(astronaut)]}
    files = stored(client)

    def style(image) -> tuple[int, str]:
        r = client.post("/api/v1/tools/style", json={**one, "options": {"method": "image", "style_image": image}})
        detail = r.json()["detail"]
        return r.status_code, detail if isinstance(detail, str) else detail[0]["msg"]

    assert style("data:image/png;base64,@@@") == (
        422, "options.style_image: the data URL's base64 payload does not decode")
    assert style("data:image/png,abc") == (422, "options.style_image: a data URL must be base64 "
                                                "(data:image/png;base64,...)")
    code, detail = style(data_url(b"not an image at all"))
    assert code == 422 and detail.startswith("options.style_image: options.style_image is not an image")
    code, detail = style(data_url(bytes(300_000)))
    assert code == 413 and "options.style_image" in detail and "DESIGNERBOX_MAX_IMAGE_BYTES" in detail
    # a path to a server file is refused, as before; so is a reference to a stored image (another user's, say)
    secret = client.app.state.settings.home / "users.sqlite"
    code, detail = style(str(secret))
    assert code == 422 and "options.style_image: file paths are not read on the server" in detail
    kept = store_input(client.app.state.settings.gallery_root, "x.png", astronaut)
    code, detail = style({"sha256": kept.sha256, "bytes": kept.bytes})
    assert code == 422 and "options.style_image: stored images are not named in a request" in detail
    logo_path = {"headline": "Hi", "brand": {"logo": str(secret)}}
    r = client.post("/api/v1/tools/marketing", json={**one, "options": logo_path})
    assert r.status_code == 422 and "options.brand.logo: file paths are not read on the server" in r.text
    # a headline that reads like "data: ..." is text, not an image
    r = client.post("/api/v1/tools/marketing", json={**one, "options": {"headline": "data: the new oil",
                                                                        "width": 200, "height": 200}})
    assert r.status_code == 202 and r.json()["request"]["options"]["headline"] == "data: the new oil"
    assert stored(client) == files | {kept.sha256}   # nothing written for the refused requests
    assert wait_job(client, r.json()["id"], timeout=300)["state"] == "succeeded"


def test_a_job_queued_before_option_files_still_runs(client, astronaut, coffee):
    """A row written before this change holds its style picture inline: the worker hands it on as it was."""
    root = client.app.state.settings.gallery_root
    request = ToolJobRequest(tool="style", inputs=[store_input(root, "astronaut.png", astronaut)],
                             options={"method": "image", "style_image": data_url(coffee)})
    row = client.app.state.queue.submit(request.model_dump(mode="json"), kind="tool")
    client.app.state.events.wakeup.set()
    done = wait_job(client, row.id, timeout=300)
    assert done["state"] == "succeeded", done["error"]
    before = run_tool("style", [("astronaut.png", astronaut)], request.options, studio=client.app.state.studio,
                      save=False)
    assert np.array_equal(pixels(client, done["images"][0]), np.asarray(before[0].image))
