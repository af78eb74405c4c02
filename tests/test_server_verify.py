"""POST /api/v1/images/{id}/verify: a queued job draws a gallery image again from its record and compares
(jobs/verify.py), in-process (TestClient runs the app's worker) with the tiny random-weight model, two
users with keys, real SQLite queue and gallery, real PNG files edited on disk."""

import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from designerbox.server.app import create_app
from designerbox.store.png_metadata import png_bytes, read_record
from designerbox.store.users import UserStore
from server_util import settings, wait_job

TINY = {"model": "tiny-test", "steps": 2, "seed": 4}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    """alice's and bob's clients, alice's finished generation of two images, the gallery folder."""
    home = tmp_path_factory.mktemp("verify-home")
    shutil.copytree(tiny_model_dir, home / "models" / "tiny-test")
    users = UserStore(home / "users.sqlite")
    keys = {}
    for name in ("alice", "bob"):
        users.add_user(name, "user")
        keys[name] = {"Authorization": f"Bearer {users.create_key(name)[0]}"}
    with TestClient(create_app(settings(home))) as c:
        job = c.post("/api/v1/generations", json={"prompt": "a yellow star", "batch_size": 2, **TINY},
                     headers=keys["alice"]).json()
        done = wait_job(_As(c, keys["alice"]), job["id"])
        assert done["state"] == "succeeded", done
        yield c, keys, done["images"], home


class _As:
    """The client with one user's key (wait_job only calls get)."""

    def __init__(self, client, headers):
        self.client, self.headers = client, headers

    def get(self, url, **kw):
        return self.client.get(url, headers=self.headers, **kw)


def verify(c, headers, image_id) -> dict:
    r = c.post(f"/api/v1/images/{image_id}/verify", headers=headers)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == "verify" and job["state"] in ("queued", "running") and job["request"]["image"] == image_id
    return wait_job(_As(c, headers), job["id"])


def test_a_fresh_image_verifies_identical_and_the_replay_is_not_kept(server):
    c, keys, images, _ = server
    before = c.get("/api/v1/images", headers=keys["alice"]).json()["images"]
    job = verify(c, keys["alice"], images[1])            # the batch's second image: its batch_index is replayed
    assert job["state"] == "succeeded" and job["images"] == [] and job["progress"]["fraction"] == 1.0
    report = job["result"]
    assert report["identical"] and report["max_abs_diff"] == 0 and report["values_differing"] == 0
    assert report["image"] == images[1] and report["model"] == "tiny-test" and report["seed"] == 5
    assert report["recipe_changes"] == []
    assert c.get("/api/v1/images", headers=keys["alice"]).json()["images"] == before  # no new gallery image
    finished = [line for line in c.get(f"/api/v1/jobs/{job['id']}/events", headers=keys["alice"]).text.splitlines()
                if line.startswith("data: ")]
    assert '"identical": true' in finished[-1]            # the stream's finished event carries the report


def test_pixels_edited_on_disk_are_found(server):
    c, keys, images, home = server
    path = next(home.rglob(f"{images[0]}*.png"))        # the gallery keeps it as <sha256>.png
    record = read_record(path)
    pixels = np.asarray(Image.open(path).convert("RGB")).copy()
    pixels[3, 5, 0] = (int(pixels[3, 5, 0]) + 40) % 256  # one value changed by 40 (or 216 wrapped)
    path.write_bytes(png_bytes(Image.fromarray(pixels), record))
    job = verify(c, keys["alice"], images[0])
    assert job["state"] == "succeeded", job
    report = job["result"]
    assert not report["identical"] and report["values_differing"] == 1 and report["max_abs_diff"] in (40, 216)
    assert report["values"] == pixels.size and report["recipe_changes"] == []


def test_another_users_image_and_an_unknown_id_are_404(server):
    c, keys, images, _ = server
    r = c.post(f"/api/v1/images/{images[0]}/verify", headers=keys["bob"])
    assert r.status_code == 404 and "no image with id" in r.json()["detail"]
    r = c.post("/api/v1/images/0123456789abcdef/verify", headers=keys["alice"])
    assert r.status_code == 404 and "no image with id '0123456789abcdef'" in r.json()["detail"]
    assert c.get("/api/v1/jobs", headers=keys["bob"]).json()["jobs"] == []  # nothing was queued for bob


def test_a_model_no_longer_installed_fails_the_job_naming_it(server):
    c, keys, images, home = server
    path = next(home.rglob(f"{images[0]}*.png"))
    record = read_record(path)                            # as if drawn with a model since removed
    record["model"]["id"] = record["request"]["model"] = "retired-model"
    path.write_bytes(png_bytes(Image.open(path).convert("RGB"), record))
    job = verify(c, keys["alice"], images[0])
    assert job["state"] == "failed" and job["result"] is None
    assert "retired-model" in job["error"] and "tiny-test" in job["error"]  # the installed models are named


def test_an_image_without_a_record_is_422_at_submit(server):
    c, keys, images, home = server
    path = next(home.rglob(f"{images[1]}*.png"))
    Image.open(path).convert("RGB").save(path, format="PNG")   # its text chunks dropped
    r = c.post(f"/api/v1/images/{images[1]}/verify", headers=keys["alice"])
    assert r.status_code == 422 and "carries no readable DesignerBox record" in r.json()["detail"][0]["msg"]
