"""Users, API keys, ownership and quotas against a real uvicorn server, with users and keys made the
way an admin makes them (the CLI, in-process) in a real users.sqlite.

Every job and image route is tried with another user's id: each answers 404 exactly as for an id
that does not exist, and lists never show another user's work; an admin sees everything."""

import dataclasses
import sqlite3

import httpx
import pytest
from PIL import Image

from designerbox.cli import main
from designerbox.server.app import create_app
from designerbox.store.users import UserStore
from server_util import FAST, ThreadServer, settings, wait_job


def cli(capsys, monkeypatch, home, *argv) -> tuple[int, str, str]:
    monkeypatch.setenv("DESIGNERBOX_HOME", str(home))
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A server with three users: alice and bob (role user), root (admin); one key each."""
    home = tmp_path_factory.mktemp("auth-home")
    store = UserStore(home / "users.sqlite")
    keys = {}
    for name, role in (("alice", "user"), ("bob", "user"), ("root", "admin")):
        store.add_user(name, role)
        keys[name] = store.create_key(name)[0]
    with ThreadServer(create_app(settings(home))) as server:
        clients = {name: httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {key}"})
                   for name, key in keys.items()}
        clients["nobody"] = httpx.Client(base_url=server.url, timeout=60)
        yield server, clients, keys, store


@pytest.fixture(scope="module")
def alice_work(keyed):
    """A finished job of alice's with two images, and a cancelled one."""
    _, c, _, _ = keyed
    job = c["alice"].post("/api/v1/generations", json={"prompt": "alice's private lamp", "batch_size": 2,
                                                       **FAST}).json()
    done = wait_job(c["alice"], job["id"])
    assert done["state"] == "succeeded" and done["user"] == "alice"
    slow = c["alice"].post("/api/v1/generations", json={"prompt": "alice's slow one", "steps": 150, "width": 32,
                                                        "height": 32}).json()
    assert c["alice"].post(f"/api/v1/jobs/{slow['id']}/cancel").json()["cancel_requested"]
    assert wait_job(c["alice"], slow["id"])["state"] == "cancelled"
    return done, slow


def test_keys_are_required_on_every_api_route_but_not_the_page_or_docs(keyed):
    server, c, keys, _ = keyed
    nobody = c["nobody"]
    for method, path in (("GET", "/api/v1/models"), ("GET", "/api/v1/presets"), ("GET", "/api/v1/jobs"),
                         ("POST", "/api/v1/generations"), ("GET", "/api/v1/images"), ("GET", "/api/v1/me"),
                         ("GET", "/sdapi/v1/sd-models"), ("GET", "/sdapi/v1/progress"),
                         ("POST", "/v1/images/generations"), ("GET", "/api/v1/users")):
        r = nobody.request(method, path, json={"prompt": "x"} if method == "POST" else None)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in nobody.get("/api/v1/models").json()["detail"]
    assert nobody.post("/v1/images/generations", json={"prompt": "x"}).json()["error"]["message"].startswith(
        "this server needs an API key")                                     # OpenAI's error shape
    other = "B" if keys["alice"].endswith("A") else "A"                 # a key one character off (never the same)
    wrong = nobody.get("/api/v1/models", headers={"Authorization": "Bearer " + keys["alice"][:-1] + other})
    assert wrong.status_code == 401 and "not valid" in wrong.json()["detail"]
    assert nobody.get("/api/v1/models", headers={"Authorization": "Basic YTpi"}).status_code == 401
    for path in ("/", "/app.js", "/docs", "/openapi.json"):                 # the page and the docs
        assert nobody.get(path).status_code == 200, path
    schema = nobody.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    me = c["alice"].get("/api/v1/me").json()
    assert (me["name"], me["role"], me["keys_required"]) == ("alice", "user", True) and len(me["webhook_secret"]) == 64


def test_another_users_jobs_are_404_on_every_route(keyed, alice_work):
    _, c, _, _ = keyed
    done, cancelled = alice_work
    bob = c["bob"]
    for job_id in (done["id"], cancelled["id"]):
        for method, path in (("GET", f"/api/v1/jobs/{job_id}"), ("POST", f"/api/v1/jobs/{job_id}/cancel"),
                             ("POST", f"/api/v1/jobs/{job_id}/retry"), ("GET", f"/api/v1/jobs/{job_id}/events")):
            theirs = bob.request(method, path)
            missing = bob.request(method, path.replace(job_id, "0" * len(job_id)))
            assert theirs.status_code == missing.status_code == 404, (path, theirs.text)
            assert theirs.json()["detail"] == missing.json()["detail"].replace("0" * len(job_id), job_id)
    assert bob.get("/api/v1/jobs").json()["jobs"] == []
    assert bob.get("/api/v1/jobs", params={"owner": "alice"}).json()["jobs"] == []  # owner= is for admins
    assert c["alice"].get(f"/api/v1/jobs/{cancelled['id']}").json()["state"] == "cancelled"  # bob's cancel: no effect
    assert {j["user"] for j in c["alice"].get("/api/v1/jobs").json()["jobs"]} == {"alice"}


def test_another_users_images_are_404_on_every_route(keyed, alice_work):
    _, c, _, _ = keyed
    done, _ = alice_work
    bob, alice = c["bob"], c["alice"]
    image_id = done["images"][0]
    for method, path in (("GET", f"/api/v1/images/{image_id}"), ("GET", f"/api/v1/images/{image_id}.png"),
                         ("GET", f"/api/v1/images/{image_id}.png?download=true"),
                         ("GET", f"/api/v1/images/{image_id[:4]}"),              # an id prefix, too
                         ("DELETE", f"/api/v1/images/{image_id}")):
        r = bob.request(method, path)
        assert r.status_code == 404 and r.json()["detail"].startswith("no image with id"), (path, r.text)
    assert bob.get("/api/v1/images").json()["images"] == []
    assert bob.get("/api/v1/images", params={"q": "private lamp", "owner": "alice"}).json()["images"] == []
    assert alice.get(f"/api/v1/images/{image_id}.png").status_code == 200   # bob's delete did nothing
    mine = alice.get("/api/v1/images", params={"q": "private lamp"}).json()["images"]
    assert sorted(i["id"] for i in mine) == sorted(done["images"]) and {i["owner"] for i in mine} == {"alice"}


def test_compatible_apis_with_a_key(keyed, alice_work):
    import openai
    import webuiapi

    server, c, keys, _ = keyed
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=keys["bob"], max_retries=0)
    result = client.images.generate(prompt="bob's blue boat", size="32x32", response_format="url")
    url = result.data[0].url
    assert httpx.get(url).status_code == 401                                  # the URL needs the key too
    assert c["bob"].get(url).status_code == 200 and c["alice"].get(url).status_code == 404
    with pytest.raises(openai.AuthenticationError, match="not valid"):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-wrong", max_retries=0).images.generate(prompt="x")

    webui = webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler", steps=2)
    webui.session.headers["Authorization"] = f"Bearer {keys['bob']}"        # A1111 clients: the same header
    webui.util_set_model("dbx-gan-v0")                                        # bob's option, not alice's
    assert webui.util_get_current_model().startswith("dbx-gan-v0")
    assert c["alice"].get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("dbx-base-v2")
    webui.util_set_model("dbx-base-v1")
    r = webui.txt2img(prompt="bob's red kite", seed=3, width=32, height=32)
    assert r.info["all_seeds"] == [3] and webui.get_progress()["state"]["job_count"] == 0
    bobs = {i["prompt"] for i in c["bob"].get("/api/v1/images").json()["images"]}
    assert bobs == {"bob's blue boat", "bob's red kite"}


def test_admin_sees_everything_and_manages_users_and_keys(keyed, alice_work):
    server, c, keys, store = keyed
    root, bob = c["root"], c["bob"]
    done, _ = alice_work
    assert root.get(f"/api/v1/jobs/{done['id']}").json()["user"] == "alice"
    assert root.get(f"/api/v1/images/{done['images'][0]}.png").status_code == 200
    owners = {j["user"] for j in root.get("/api/v1/jobs").json()["jobs"]}
    assert {"alice", "bob"} <= owners
    assert {j["user"] for j in root.get("/api/v1/jobs", params={"owner": "alice"}).json()["jobs"]} == {"alice"}
    assert {i["owner"] for i in root.get("/api/v1/images", params={"owner": "alice"}).json()["images"]} == {"alice"}
    for method, path in (("GET", "/api/v1/users"), ("POST", "/api/v1/users"), ("GET", "/api/v1/keys"),
                         ("POST", "/api/v1/users/bob/keys"), ("DELETE", "/api/v1/keys/abc"),
                         ("PATCH", "/api/v1/users/bob")):
        r = bob.request(method, path, json={"name": "x"} if method in ("POST", "PATCH") else None)
        assert r.status_code == 403 and "not an admin" in r.json()["detail"], path
    made = root.post("/api/v1/users", json={"name": "carol", "max_concurrent": 2})
    assert made.status_code == 201 and made.json() == {"name": "carol", "role": "user", "max_concurrent": 2,
                                                       "jobs_per_minute": None}
    r = root.post("/api/v1/users", json={"name": "carol"})
    assert r.status_code == 422 and "already exists" in r.json()["detail"][0]["msg"]
    r = root.post("/api/v1/users", json={"name": "dave", "role": "owner"})
    assert r.status_code == 422 and "'admin' or 'user'" in r.json()["detail"][0]["msg"]
    assert root.patch("/api/v1/users/carol", json={"jobs_per_minute": 5}).json()["jobs_per_minute"] == 5
    assert root.post("/api/v1/users/nobody/keys").status_code == 404
    created = root.post("/api/v1/users/carol/keys").json()
    assert created["key"].startswith(f"dbx_{created['id']}_")
    listed = root.get("/api/v1/keys", params={"user": "carol"}).json()
    assert listed == [{k: created[k] for k in ("id", "user", "created_at", "revoked_at")}]  # never the key
    carol = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {created['key']}"})
    assert carol.get("/api/v1/me").json()["name"] == "carol"
    assert root.delete(f"/api/v1/keys/{created['id']}").json()["revoked_at"]
    assert carol.get("/api/v1/me").status_code == 401                        # revoked: at once
    with sqlite3.connect(store.path) as db:                                   # hashed at rest
        stored = [row[0] for row in db.execute("SELECT sha256 FROM keys")]
    assert all(len(h) == 64 for h in stored) and not any(k in h for h in stored for k in keys.values())
    with open(store.path, "rb") as f:
        assert not any(k.encode() in f.read() for k in keys.values())


def test_quotas_answer_429_with_retry_after(tmp_path):
    store = UserStore(tmp_path / "users.sqlite")
    store.add_user("carol", "user", max_concurrent=2, jobs_per_minute=3)
    store.add_user("admin", "admin")
    key, admin_key = store.create_key("carol")[0], store.create_key("admin")[0]
    app = create_app(dataclasses.replace(settings(tmp_path), quota_concurrent=1), workers=False)  # jobs stay queued
    with ThreadServer(app) as server:
        carol = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"})
        admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin_key}"})
        first = [carol.post("/api/v1/generations", json={"prompt": f"job {i}"}) for i in range(2)]
        assert [r.status_code for r in first] == [202, 202]                  # her own limit (2), not the server's
        r = carol.post("/api/v1/generations", json={"prompt": "one too many"})
        assert r.status_code == 429 and r.headers["retry-after"] == "5"
        assert "2 jobs queued or running, the most allowed at once (2)" in r.json()["detail"]
        r = carol.post("/v1/images/generations", json={"prompt": "through OpenAI"})
        assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_exceeded"
        carol.post(f"/api/v1/jobs/{first[0].json()['id']}/cancel")
        assert carol.post("/api/v1/generations", json={"prompt": "job 3"}).status_code == 202
        carol.post(f"/api/v1/jobs/{first[1].json()['id']}/cancel")
        r = carol.post("/api/v1/generations", json={"prompt": "job 4"})  # 3 submitted this minute already
        assert r.status_code == 429 and "3 jobs in the last minute" in r.json()["detail"]
        assert 1 <= int(r.headers["retry-after"]) <= 60
        r = carol.post(f"/api/v1/jobs/{first[0].json()['id']}/retry")       # a retry is a new job: counted
        assert r.status_code == 429
        burst = [admin.post("/api/v1/generations", json={"prompt": f"admin {i}"}) for i in range(5)]
        assert {r.status_code for r in burst} == {202}                        # admins have no quotas
        assert len(carol.get("/api/v1/jobs").json()["jobs"]) == 3


def test_keys_required_beyond_loopback_even_once_all_are_revoked(tmp_path):
    store = UserStore(tmp_path / "users.sqlite")
    store.add_user("admin", "admin")
    key, row = store.create_key("admin")
    store.revoke_key(row["id"])
    app = create_app(dataclasses.replace(settings(tmp_path), require_keys=True), workers=False)
    with ThreadServer(app) as server:
        r = httpx.get(f"{server.url}/api/v1/models")
        assert r.status_code == 401 and "needs an API key" in r.json()["detail"]
        assert httpx.get(f"{server.url}/api/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    open_app = create_app(settings(tmp_path), workers=False)  # loopback, no live key: single-user mode again
    with ThreadServer(open_app) as server:
        me = httpx.get(f"{server.url}/api/v1/me", headers={"Authorization": "Bearer anything"}).json()
        assert (me["name"], me["role"], me["keys_required"]) == ("local", "admin", False)


def test_cli_users_and_keys(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    code, out, err = cli(capsys, monkeypatch, home, "serve", "--host", "0.0.0.0")
    assert code == 2 and "no API keys yet" in err and "designerbox users add NAME --admin" in err
    assert cli(capsys, monkeypatch, home, "users", "list")[1].startswith("no users")
    assert cli(capsys, monkeypatch, home, "users", "add", "ada", "--admin")[0] == 0
    assert cli(capsys, monkeypatch, home, "users", "add", "bo", "--jobs-per-minute", "4")[0] == 0
    code, _, err = cli(capsys, monkeypatch, home, "users", "add", "Bad Name")
    assert code == 2 and "lower-case letters" in err
    code, _, err = cli(capsys, monkeypatch, home, "keys", "create", "nobody")
    assert code == 2 and "no user named 'nobody'; users: ada, bo" in err
    code, out, err = cli(capsys, monkeypatch, home, "keys", "create", "bo")
    key = out.strip()
    assert code == 0 and key.startswith("dbx_") and "shown this once" in err
    key_id = key.split("_")[1]
    listing = cli(capsys, monkeypatch, home, "users", "list")[1]
    assert "ada" in listing and f"per minute 4, live keys: {key_id}" in listing
    assert key not in cli(capsys, monkeypatch, home, "keys", "list")[1]      # ids only, never the key
    assert UserStore(home / "users.sqlite").authenticate(key).name == "bo"
    code, out, _ = cli(capsys, monkeypatch, home, "keys", "revoke", key_id)
    assert code == 0 and "revoked" in out
    assert UserStore(home / "users.sqlite").authenticate(key) is None
    code, _, err = cli(capsys, monkeypatch, home, "keys", "revoke", "nope")
    assert code == 2 and "no key with id 'nope'" in err


# What SQLAlchemy created for the gallery and the queue before users and callbacks existed
OLD_GALLERY = """CREATE TABLE images (id VARCHAR(16) NOT NULL, sha256 VARCHAR(64) NOT NULL, path VARCHAR(512) NOT NULL,
    created_at DATETIME NOT NULL, model_id VARCHAR(64) NOT NULL, prompt TEXT NOT NULL, seed INTEGER NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, record JSON NOT NULL, PRIMARY KEY (id));
CREATE UNIQUE INDEX ix_images_sha256 ON images (sha256);
CREATE INDEX ix_images_created_at ON images (created_at);
CREATE INDEX ix_images_model_id ON images (model_id);"""
OLD_QUEUE = """CREATE TABLE jobs (id VARCHAR(32) NOT NULL, user VARCHAR(64) NOT NULL, priority INTEGER NOT NULL,
    state VARCHAR(16) NOT NULL, request JSON NOT NULL, source VARCHAR(16) NOT NULL, created_at DATETIME NOT NULL,
    started_at DATETIME, finished_at DATETIME, worker VARCHAR(128), device VARCHAR(32), attempts INTEGER NOT NULL,
    step INTEGER NOT NULL, total_steps INTEGER, cancel_requested BOOLEAN NOT NULL, error TEXT, images JSON NOT NULL,
    stored BOOLEAN NOT NULL, retry_of VARCHAR(32), PRIMARY KEY (id));
CREATE INDEX ix_jobs_user ON jobs (user);
CREATE INDEX ix_jobs_state ON jobs (state);
CREATE INDEX ix_jobs_created_at ON jobs (created_at);"""


def test_an_old_gallery_and_queue_keep_working(tmp_path):
    import hashlib
    import json

    from designerbox.store.png_metadata import png_bytes

    home = tmp_path / "home"
    (home / "gallery").mkdir(parents=True)
    record = {"request": {"prompt": "an old green vase"}, "seed": 9, "output_size": [8, 8],
              "model": {"id": "dbx-base-v1", "hash": "h"}, "versions": {"designerbox": "0"}}
    png = png_bytes(Image.new("RGB", (8, 8), "green"), record)
    sha = hashlib.sha256(png).hexdigest()
    (home / "gallery" / "images" / sha[:2]).mkdir(parents=True)
    (home / "gallery" / "images" / sha[:2] / f"{sha}.png").write_bytes(png)
    with sqlite3.connect(home / "gallery" / "gallery.sqlite") as db:
        db.executescript(OLD_GALLERY)
        db.execute("INSERT INTO images VALUES (?, ?, ?, '2025-01-02 03:04:05', 'dbx-base-v1', ?, 9, 8, 8, ?)",
                   (sha[:16], sha, f"images/{sha[:2]}/{sha}.png", "an old green vase", json.dumps(record)))
    with sqlite3.connect(home / "queue.sqlite") as db:
        db.executescript(OLD_QUEUE)
        db.execute("INSERT INTO jobs VALUES ('oldjob', 'local', 0, 'queued', ?, 'api', '2025-01-02 03:04:05', NULL, "
                   "NULL, NULL, NULL, 0, 0, NULL, 0, NULL, '[]', 0, NULL)",
                   (json.dumps({"prompt": "an old queued cup", "seed": 1, **FAST}),))
    with ThreadServer(create_app(settings(home))) as server:
        api = httpx.Client(base_url=server.url, timeout=60)
        old = api.get("/api/v1/images", params={"q": "green vase"}).json()["images"]
        assert [(i["id"], i["owner"]) for i in old] == [(sha[:16], "local")]
        assert api.get(f"/api/v1/images/{sha[:16]}.png").content == png
        job = wait_job(api, "oldjob")                                          # queued before the upgrade: runs
        assert job["state"] == "succeeded" and job["user"] == "local" and job["callback"] is None
        new = wait_job(api, api.post("/api/v1/generations", json={"prompt": "a new cup", **FAST}).json()["id"])
        assert new["state"] == "succeeded"
        # the owner of the old rows is the local user: a keyed user does not see them, the local user's key does
        store = UserStore(home / "users.sqlite")
        store.add_user("local", "user")
        store.add_user("eve", "user")
        local = {"Authorization": f"Bearer {store.create_key('local')[0]}"}
        eve = {"Authorization": f"Bearer {store.create_key('eve')[0]}"}
        assert api.get(f"/api/v1/images/{sha[:16]}.png", headers=eve).status_code == 404
        assert api.get(f"/api/v1/images/{sha[:16]}.png", headers=local).status_code == 200
        assert len(api.get("/api/v1/images", headers=local).json()["images"]) == 3  # the vase and two cups
    with sqlite3.connect(home / "gallery" / "gallery.sqlite") as db:
        assert "ix_images_owner" in {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
