"""The creation tools over REST: GET /api/v1/tools and POST /api/v1/tools/{name} (JSON with data URLs, or
multipart) through the real app, its worker thread and SQLite queue and gallery, with the built-in
product and social tools on real images (skimage's astronaut, a synthetic product photo)."""

import base64
import dataclasses
import io
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from designerbox.server.app import create_app
from designerbox.store.users import UserStore
from designerbox.tools.registry import TOOL_MODULES
from server_util import ThreadServer, settings, wait_job

SOCIAL = {"sizes": ["instagram-post", "x-post"]}


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def astronaut() -> bytes:
    data = pytest.importorskip("skimage.data")
    return png(np.asarray(Image.fromarray(data.astronaut()).resize((160, 160))))


@pytest.fixture(scope="module")
def product_photo() -> bytes:
    """A red bottle-like object on a plain light background, 240x180."""
    img = np.full((180, 240, 3), (200, 205, 210), np.uint8)
    cv2.ellipse(img, (140, 95), (40, 58), 15, 0, 360, (200, 40, 30), -1)
    cv2.rectangle(img, (128, 14), (152, 34), (200, 40, 30), -1)
    return png(img)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app(dataclasses.replace(settings(tmp_path_factory.mktemp("tools-home")), max_image_bytes=200_000))
    with TestClient(app) as c:
        yield c


def test_list_tools_is_the_registry(client):
    listed = client.get("/api/v1/tools").json()
    assert [t["name"] for t in listed] == list(TOOL_MODULES)
    assert not {"product", "social"} & {t["name"] for t in listed if "error" in t}
    product = next(t for t in listed if t["name"] == "product")
    assert product["version"] and product["summary"] and "fill" in product["options"]["properties"]
    assert {"amazon", "etsy", "shopify", "ebay"} <= {p["id"] for p in product["presets"]}
    amazon = next(p for p in product["presets"] if p["id"] == "amazon")
    assert amazon["options"]["width"] == 2000 and amazon["name"]
    social = client.get("/api/v1/tools/social").json()
    assert social["prompt_field"] == "prompt" and social["options"]["properties"]["fit"]["enum"] == ["auto", "crop", "pad", "outpaint"]


def test_social_json_data_url_to_gallery(client, astronaut):
    r = client.post("/api/v1/tools/social", json={"inputs": [{"name": "astronaut.png", "data": data_url(astronaut)}],
                                                  "options": SOCIAL})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == "tool" and job["request"]["tool"] == "social" and job["request"]["inputs"][0]["name"] == \
        "astronaut.png" and "data" not in str(job["request"]["inputs"])  # the bytes are a file, not in the row
    done = wait_job(client, job["id"])
    assert done["state"] == "succeeded", done["error"]
    assert len(done["images"]) == 2 and done["progress"]["fraction"] == 1.0
    sizes = set()
    for image_id in done["images"]:
        info = client.get(f"/api/v1/images/{image_id}").json()
        rec = info["record"]
        assert rec["task"] == "tool" and rec["tool"]["name"] == "social" and rec["input"]["file"] == "astronaut.png"
        assert info["owner"] == "local" and info["model"] == "tool:social"
        img = Image.open(io.BytesIO(client.get(f"/api/v1/images/{image_id}.png").content))
        sizes.add(img.size)
    assert sizes == {(1080, 1080), (1600, 900)}
    gallery = {i["id"] for i in client.get("/api/v1/images", params={"model": "tool:social"}).json()["images"]}
    assert set(done["images"]) <= gallery


def test_product_multipart_with_preset(client, product_photo):
    r = client.post("/api/v1/tools/product", files=[("inputs", ("bottle.png", product_photo, "image/png"))],
                    data={"preset": "ebay", "options": '{"width": 200, "height": 200, "work_size": 128}'})
    assert r.status_code == 202, r.text
    done = wait_job(client, r.json()["id"])
    assert done["state"] == "succeeded", done["error"]
    (image_id,) = done["images"]
    rec = client.get(f"/api/v1/images/{image_id}").json()["record"]
    assert rec["tool"]["preset"] == "ebay" and rec["options"]["background"] == "white" and rec["options"]["width"] == 200
    out = np.asarray(Image.open(io.BytesIO(client.get(f"/api/v1/images/{image_id}.png").content)).convert("RGB"))
    assert out.shape == (200, 200, 3) and (out[0] == 255).all()          # marketplace white border
    red = (out[..., 0] > 150) & (out[..., 1] < 90)
    assert red.mean() > 0.15                                            # the product fills the frame


def test_bad_requests_name_the_valid_choices(client, astronaut):
    one = {"inputs": [data_url(astronaut)]}
    r = client.post("/api/v1/tools/sharpen", json=one)
    assert r.status_code == 404 and "valid tools: " in r.json()["detail"] and "product" in r.json()["detail"]
    r = client.post("/api/v1/tools/social", json={**one, "options": {"zoom": 2}})
    assert r.status_code == 422 and "unknown option 'zoom'" in r.text and "sizes, fit" in r.text
    r = client.post("/api/v1/tools/social", json={**one, "options": {"fit": "stretch"}})
    assert r.status_code == 422 and "'auto', 'crop', 'pad' or 'outpaint'" in r.text
    r = client.post("/api/v1/tools/social", json={**one, "options": {"sizes": ["myspace"]}})
    assert r.status_code == 422 and "valid sizes: " in r.text and "instagram-post" in r.text
    r = client.post("/api/v1/tools/product", json={**one, "preset": "walmart"})
    assert r.status_code == 422 and "valid presets: amazon, etsy" in r.text
    r = client.post("/api/v1/tools/product", json={"inputs": []})
    assert r.status_code == 422 and "needs at least one input image" in r.text
    r = client.post("/api/v1/tools/social", json={**one, "options": {"prompt": "a cat"}})
    assert r.status_code == 422 and "not both" in r.text
    r = client.post("/api/v1/tools/social", json={"inputs": ["/etc/passwd"]})
    assert r.status_code == 422 and "data URLs" in r.text
    r = client.post("/api/v1/tools/social", json={"inputs": [data_url(b"not an image at all")]})
    assert r.status_code == 422 and "inputs[0]" in r.text
    r = client.post("/api/v1/tools/social", json={**one, "colour": "red"})
    assert r.status_code == 422 and "valid fields: inputs, options, preset" in r.text
    secret = Path(str(client.app.state.settings.home)) / "users.sqlite"  # any file of the server's
    r = client.post("/api/v1/tools/social", json={**one, "options": {"model": str(secret)}})
    assert r.status_code == 422 and "file paths are not read on the server" in r.text and "options.model" in r.text
    big = data_url(bytes(300_000))
    r = client.post("/api/v1/tools/social", json={"inputs": [big]})
    assert r.status_code == 413 and "DESIGNERBOX_MAX_IMAGE_BYTES" in r.text
    r = client.post("/api/v1/tools/social", files=[("inputs", ("big.png", bytes(300_000), "image/png"))])
    assert r.status_code == 413 and "big.png" in r.text
    r = client.post("/api/v1/tools/social", files=[("inputs", ("a.png", astronaut, "image/png"))],
                    data={"options": "[1, 2"})
    assert r.status_code == 422 and "JSON object" in r.text
    r = client.post("/api/v1/tools/social", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 422 and "multipart/form-data" in r.text


def test_cancel_and_retry_a_queued_tool_job(tmp_path, astronaut):
    app = create_app(settings(tmp_path), workers=False)  # jobs stay queued
    with TestClient(app) as c:
        job = c.post("/api/v1/tools/social", json={"inputs": [data_url(astronaut)], "options": SOCIAL}).json()
        cancelled = c.post(f"/api/v1/jobs/{job['id']}/cancel").json()
        assert cancelled["state"] == "cancelled"
        again = c.post(f"/api/v1/jobs/{job['id']}/retry").json()
        assert again["kind"] == "tool" and again["retry_of"] == job["id"] and again["request"] == job["request"]
        assert again["state"] == "queued"


def test_tool_jobs_are_their_owners(tmp_path, astronaut):
    store = UserStore(tmp_path / "users.sqlite")
    keys = {}
    for name in ("alice", "bob"):
        store.add_user(name, "user")
        keys[name] = store.create_key(name)[0]
    with ThreadServer(create_app(settings(tmp_path))) as server:
        alice, bob = (httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {keys[n]}"})
                      for n in ("alice", "bob"))
        assert httpx.post(f"{server.url}/api/v1/tools/social", json={"inputs": [data_url(astronaut)]}).status_code == 401
        job = alice.post("/api/v1/tools/social", json={"inputs": [data_url(astronaut)], "options": SOCIAL}).json()
        done = wait_job(alice, job["id"])
        assert done["state"] == "succeeded" and done["user"] == "alice"
        assert bob.get(f"/api/v1/jobs/{job['id']}").status_code == 404
        assert bob.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 404
        assert bob.post(f"/api/v1/jobs/{job['id']}/retry").status_code == 404
        assert bob.get(f"/api/v1/images/{done['images'][0]}").status_code == 404
        assert bob.get("/api/v1/images").json()["images"] == []
        mine = {i["id"] for i in alice.get("/api/v1/images").json()["images"]}
        assert set(done["images"]) == mine


def test_a_prompt_tool_job_draws_its_input_with_a_fixed_seed(client):
    r = client.post("/api/v1/tools/social", json={"options": {"prompt": "a red apple", "sizes": ["instagram-post"]}})
    assert r.status_code == 202, r.text
    job = r.json()
    seed = job["request"]["options"]["seed"]
    assert isinstance(seed, int) and job["request"]["inputs"] == []   # fixed at submit: a re-run draws the same
    done = wait_job(client, job["id"], timeout=300)
    assert done["state"] == "succeeded", done["error"]
    rec = client.get(f"/api/v1/images/{done['images'][0]}").json()["record"]
    assert rec["input"]["prompt"] == "a red apple" and rec["input"]["seed"] == seed and rec["output_size"] == [1080, 1080]
