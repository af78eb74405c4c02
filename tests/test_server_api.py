"""The REST API under /api/v1 in-process (TestClient runs the app's lifespan, so its worker thread
runs jobs), with the real built-in model at two steps and a real SQLite queue and gallery in tmp."""

import base64
import io
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from designerbox.server.app import create_app
from server_util import FAST, settings, wait_job


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app(settings(tmp_path_factory.mktemp("server-home")))
    with TestClient(app) as c:
        yield c


def events_of(client, job_id: str) -> list[dict]:
    out = []
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                out.append(json.loads(line[6:]))
                assert out[-1]["event"] == kind
    return out


def test_generate_follow_events_and_fetch_images(client):
    r = client.post("/api/v1/generations", json={"prompt": "a red apple", "seed": 11, "batch_size": 2, **FAST})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] in ("queued", "running") and job["request"]["seed"] == 11 and job["user"] == "local"
    events = events_of(client, job["id"])
    kinds = [e["event"] for e in events]
    assert kinds == ["queued", "started", "progress", "progress", "finished"]
    progress = [e for e in events if e["event"] == "progress"]
    assert [(e["step"], e["total"]) for e in progress] == [(1, 2), (2, 2)]
    preview = Image.open(io.BytesIO(base64.b64decode(progress[-1]["preview"])))
    assert preview.size == (32, 32)                     # the denoised estimate, as a small PNG
    done = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert done["state"] == "succeeded" and done["progress"]["fraction"] == 1.0 and done["attempts"] == 1
    assert done["images"] == events[-1]["images"] and len(done["images"]) == 2
    png = client.get(f"/api/v1/images/{done['images'][0]}.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    im = Image.open(io.BytesIO(png.content))
    assert im.size == (32, 32) and json.loads(im.text["designerbox"])["seed"] == 11
    one = client.get(f"/api/v1/images/{done['images'][1]}").json()
    assert one["record"]["seed"] == 12 and one["record"]["request"]["steps"] == 2 and one["model"] == "dbx-base-v2"
    # a finished job's stream is one event from its stored state
    assert [e["event"] for e in events_of(client, job["id"])][-1] == "finished"


def test_gallery_filters_search_download_delete(client):
    for prompt, model in (("a yellow Star", "dbx-base-v1"), ("a green tree", "dbx-gan-v0")):
        options = FAST if model == "dbx-base-v1" else {}
        job = client.post("/api/v1/generations", json={"prompt": prompt, "model": model, **options}).json()
        assert wait_job(client, job["id"])["state"] == "succeeded"
    found = client.get("/api/v1/images", params={"q": "STAR"}).json()["images"]
    assert [i["prompt"] for i in found] == ["a yellow Star"]
    gan = client.get("/api/v1/images", params={"model": "dbx-gan-v0"}).json()["images"]
    assert [i["prompt"] for i in gan] == ["a green tree"] and gan[0]["size"] == "64x64"
    soon = (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat()
    assert client.get("/api/v1/images", params={"since": soon}).json()["images"] == []
    assert len(client.get("/api/v1/images", params={"until": soon, "q": "tree"}).json()["images"]) == 1
    assert client.get("/api/v1/images", params={"offset": 2**63}).status_code == 422  # past SQLite's INTEGER: refused
    image_id = found[0]["id"]
    download = client.get(f"/api/v1/images/{image_id}.png", params={"download": "true"})
    assert download.headers["content-disposition"].startswith("attachment")
    assert client.delete(f"/api/v1/images/{image_id}").json()["id"] == image_id
    assert client.get("/api/v1/images", params={"q": "star"}).json()["images"] == []
    gone = client.get(f"/api/v1/images/{image_id}.png")
    assert gone.status_code == 404 and image_id in gone.json()["detail"]


@pytest.mark.parametrize("body, where, words", [
    ({"prompt": "x", "sampler": "fast"}, ["body", "sampler"], ["valid samplers: euler, euler_a"]),
    ({"prompt": "x", "promt": "typo"}, ["body", "promt"], ["unknown field 'promt'", "valid fields:", "negative"]),
    ({"prompt": "x", "model": "sdxl-turbo"}, ["body", "model"], ["unknown model 'sdxl-turbo'", "dbx-base-v1", "gan"]),
    ({"prompt": "x", "style": "neon"}, ["body"], ["unknown style 'neon'", "valid styles:", "flat"]),
    ({"prompt": "x", "size_preset": "poster"}, ["body"], ["unknown size preset 'poster'", "instagram-post"]),
    ({"prompt": "x", "model": "dbx-gan-v0", "steps": 5}, ["body"], ["is a GAN", "truncation"]),
    ({"prompt": "x", "model": "dbx-eval-v1"}, ["body"], ["evaluator model, not a text-to-image model"]),
    ({"prompt": "x", "width": 100, "height": 64}, ["body", "width"], ["not a multiple of 8 (try 96 or 104)"]),
    ({"prompt": "x", "upscaler": "esrgan-huge"}, ["body", "upscaler"], ["unknown upscaler", "'none'"]),
    ({"prompt": "   "}, ["body", "prompt"], ["the prompt is empty"]),
])
def test_bad_requests_are_422_naming_the_valid_choices(client, body, where, words):
    r = client.post("/api/v1/generations", json=body)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    hit = next((e for e in errors if e["loc"] == where), None)
    assert hit is not None, errors
    for word in words:
        assert word in hit["msg"]
    assert client.get("/api/v1/presets").status_code == 200  # the server is still up


def test_unknown_ids_and_states(client):
    assert client.get("/api/v1/jobs/nope").status_code == 404
    assert client.post("/api/v1/jobs/nope/cancel").status_code == 404
    assert client.get("/api/v1/jobs/nope/events").status_code == 404
    assert client.get("/api/v1/models/nope").json()["detail"].startswith("unknown model 'nope'; installed models:")
    r = client.get("/api/v1/jobs", params={"state": "done"})
    assert r.status_code == 422 and "valid states: queued, running, succeeded" in r.json()["detail"][0]["msg"]
    r = client.get("/api/v1/models", params={"kind": "lora"})
    assert r.status_code == 422 and "valid kinds: diffusion, gan" in r.json()["detail"][0]["msg"]
    r = client.post("/api/v1/generations", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_cancel_takes_effect_within_a_step_and_retry_runs_again(client):
    slow = client.post("/api/v1/generations", json={"prompt": "a slow moon", "steps": 150, "width": 32,
                                                    "height": 32, "seed": 4}).json()
    queued = client.post("/api/v1/generations", json={"prompt": "a queued sun", "seed": 5, **FAST}).json()
    deadline = time.monotonic() + 60
    while client.get(f"/api/v1/jobs/{slow['id']}").json()["progress"]["step"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    r = client.post(f"/api/v1/jobs/{queued['id']}/cancel")     # still waiting behind the slow one
    assert r.json()["state"] == "cancelled"
    r = client.post(f"/api/v1/jobs/{slow['id']}/cancel")
    asked = time.time()
    assert r.status_code == 200 and r.json()["cancel_requested"]
    events = events_of(client, slow["id"])
    assert events[-1]["event"] == "cancelled"
    late = [e for e in events if e["event"] == "progress" and e["time"] > asked]
    assert len(late) <= 1                                        # stopped within one sampling step
    job = client.get(f"/api/v1/jobs/{slow['id']}").json()
    assert job["state"] == "cancelled" and job["images"] == [] and job["progress"]["step"] < 150
    assert client.get("/api/v1/images", params={"q": "slow moon"}).json()["images"] == []
    assert client.post(f"/api/v1/jobs/{slow['id']}/cancel").json()["state"] == "cancelled"  # idempotent
    again = client.post(f"/api/v1/jobs/{queued['id']}/retry")
    assert again.status_code == 202 and again.json()["retry_of"] == queued["id"]
    done = wait_job(client, again.json()["id"])
    assert done["state"] == "succeeded" and done["request"]["seed"] == 5
    r = client.post(f"/api/v1/jobs/{done['id']}/retry")
    assert r.status_code == 409 and "only failed or cancelled jobs can be retried" in r.json()["detail"]


def test_priority_jumps_the_queue(client):
    blocker = client.post("/api/v1/generations", json={"prompt": "a blocker", "steps": 150, "width": 32,
                                                       "height": 32}).json()
    low = client.post("/api/v1/generations", json={"prompt": "low", **FAST}).json()
    high = client.post("/api/v1/generations?priority=5", json={"prompt": "high", **FAST}).json()
    assert high["priority"] == 5
    low_done, high_done = wait_job(client, low["id"]), wait_job(client, high["id"])
    assert high_done["started_at"] < low_done["started_at"]
    wait_job(client, blocker["id"])
    assert client.post("/api/v1/generations?priority=99", json={"prompt": "x"}).status_code == 422


def test_models_presets_jobs_docs_and_page(client):
    models = {m["id"]: m for m in client.get("/api/v1/models").json()["models"]}
    assert models["dbx-base-v2"]["default"] and models["dbx-base-v2"]["text_to_image"]
    assert "emoji" in models["dbx-base-v1"]["good_at"] and not models["dbx-eval-v1"]["text_to_image"]
    t2i = client.get("/api/v1/models", params={"text_to_image": "true"}).json()["models"]
    assert {"dbx-base-v1", "dbx-emoji-v0", "dbx-gan-v0"} <= {m["id"] for m in t2i}
    assert all(m["kind"] in ("diffusion", "gan") for m in t2i) and "dbx-eval-v1" not in {m["id"] for m in t2i}
    one = client.get("/api/v1/models/dbx-gan-v0").json()
    assert one["kind"] == "gan" and one["card"] and "GAN" in one["card"]
    presets = client.get("/api/v1/presets").json()
    assert "3d" in {s["id"] for s in presets["styles"]} and "instagram-post" in {s["id"] for s in presets["sizes"]}
    assert client.get("/api/v1/presets/sizes").json() == presets["sizes"]
    jobs = client.get("/api/v1/jobs", params={"state": "succeeded"}).json()["jobs"]
    assert jobs and all(j["state"] == "succeeded" for j in jobs)
    schema = client.get("/openapi.json").json()
    for path in ("/api/v1/generations", "/api/v1/jobs/{job_id}/events", "/api/v1/images/{image_id}.png",
                 "/v1/images/generations", "/sdapi/v1/txt2img"):
        assert path in schema["paths"]
    assert "swagger" in client.get("/docs").text.lower()
    page = client.get("/")
    assert page.status_code == 200 and "<title>DesignerBox</title>" in page.text
    assert "text/event-stream" in client.get("/app.js").text  # job events read from a fetch stream (with the key)
