"""Brand kits over REST (/api/v1/brands, /api/v1/fonts) on a real uvicorn server with two users' keys:
each sees and deletes only their own kits, bad kits are 422s naming the valid choices, and the
marketing tool over REST draws with a saved kit named by `"brand": "NAME"` (its colours and logo)."""

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from designerbox.server.app import create_app
from designerbox.store.users import UserStore
from server_util import ThreadServer, settings, wait_job

RED, BLUE = "#C81E1E", "#1E3CC8"


def data_url(im: Image.Image) -> str:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def users(tmp_path_factory):
    home = tmp_path_factory.mktemp("brands-home")
    store = UserStore(home / "users.sqlite")
    keys = {}
    for name in ("alice", "bob"):
        store.add_user(name, "user")
        keys[name] = store.create_key(name)[0]
    with ThreadServer(create_app(settings(home))) as server:
        yield {n: httpx.Client(base_url=server.url, timeout=120, headers={"Authorization": f"Bearer {k}"})
               for n, k in keys.items()}


@pytest.fixture(scope="module")
def hero() -> str:
    data = pytest.importorskip("skimage.data")
    return data_url(Image.fromarray(data.coffee()).resize((200, 150)))


def test_fonts_are_listed_with_their_licence(users):
    fonts = users["alice"].get("/api/v1/fonts").json()
    ids = {f["id"] for f in fonts}
    assert {"dejavu-sans", "dejavu-sans-bold"} <= ids
    assert all(f["licence"] and f["package"] and isinstance(f["installed"], bool) for f in fonts)


def test_a_users_kits_are_their_own(users):
    alice, bob = users["alice"], users["bob"]
    logo = Image.new("RGBA", (64, 32), (0, 0, 0, 0))
    logo.paste((20, 200, 60, 255), (4, 4, 60, 28))
    r = alice.post("/api/v1/brands", json={"name": "Acme", "colours": {"primary": RED, "text": "#111111"},
                                           "fonts": {"headline": "dejavu-serif-bold"}, "logo": data_url(logo)})
    assert r.status_code == 201, r.text
    kit = r.json()
    assert kit["colours"]["primary"] == RED and kit["colours"]["secondary"] == "#FFC914"  # the rest: defaults
    assert kit["fonts"] == {"headline": "dejavu-serif-bold", "body": "dejavu-sans"} and kit["logo_sha256"]
    png = Image.open(io.BytesIO(alice.get(kit["logo_url"]).content))
    assert png.size == (64, 32) and png.mode == "RGBA"
    assert [k["name"] for k in alice.get("/api/v1/brands").json()["brands"]] == ["Acme"]
    # bob sees none of it: another user's kit is answered as a missing one
    assert bob.get("/api/v1/brands").json()["brands"] == []
    for method, path in (("GET", "/api/v1/brands/Acme"), ("GET", "/api/v1/brands/Acme/logo.png"),
                         ("DELETE", "/api/v1/brands/Acme")):
        r = bob.request(method, path)
        assert r.status_code == 404 and "no brand kit named 'Acme'" in r.text, (method, path, r.text)
    # bob's kit of the same name is his own
    assert bob.post("/api/v1/brands", json={"name": "Acme", "colours": {"primary": BLUE}}).status_code == 201
    assert alice.get("/api/v1/brands/Acme").json()["colours"]["primary"] == RED
    assert bob.get("/api/v1/brands/Acme").json()["colours"]["primary"] == BLUE
    assert bob.get("/api/v1/brands/Acme/logo.png").status_code == 404  # his has no logo
    assert bob.delete("/api/v1/brands/Acme").json()["name"] == "Acme"
    assert bob.get("/api/v1/brands").json()["brands"] == []
    assert alice.get("/api/v1/brands/Acme").status_code == 200
    assert httpx.get(str(alice.base_url.join("/api/v1/brands"))).status_code == 401


def test_bad_kits_are_422_naming_the_valid_choices(users):
    c = users["alice"]
    r = c.post("/api/v1/brands", json={"name": "Bad", "colours": {"primary": "red"}})
    assert r.status_code == 422 and "#RRGGBB" in r.text
    r = c.post("/api/v1/brands", json={"name": "Bad", "fonts": {"headline": "comic-sans"}})
    assert r.status_code == 422 and "unknown font 'comic-sans'" in r.text and "dejavu-sans-bold" in r.text
    r = c.post("/api/v1/brands", json={"name": "../etc"})
    assert r.status_code == 422 and "name" in r.text
    r = c.post("/api/v1/brands", json={"name": "Bad", "logo": "data:image/png;base64,"
                                       + base64.b64encode(b"no pixels here").decode()})
    assert r.status_code == 422 and "logo is not an image" in r.text and "PNG, JPEG" in r.text
    r = c.post("/api/v1/brands", json={"name": "Bad", "logo": "/etc/hostname"})
    assert r.status_code == 422 and "data URL" in r.text
    r = c.post("/api/v1/brands", json={"name": "Bad", "slogan": "hi"})
    assert r.status_code == 422 and "slogan" in r.text
    assert c.get("/api/v1/brands/Bad").status_code == 404
    assert c.post("/api/v1/brands", json={"name": "Twice"}).status_code == 201
    r = c.post("/api/v1/brands", json={"name": "Twice"})
    assert r.status_code == 409 and '"replace": true' in r.json()["detail"]
    r = c.post("/api/v1/brands", json={"name": "Twice", "colours": {"primary": BLUE}, "replace": True})
    assert r.status_code == 201 and r.json()["colours"]["primary"] == BLUE


def test_marketing_over_rest_with_a_saved_kit(users, hero):
    alice, bob = users["alice"], users["bob"]
    logo = Image.new("RGB", (40, 40), (20, 200, 60))
    assert alice.post("/api/v1/brands", json={"name": "Shop", "colours": {"primary": RED, "background": "#FFFFFF"},
                                              "logo": data_url(logo)}).status_code == 201
    body = {"inputs": [hero], "preset": "banner",
            "options": {"brand": "Shop", "headline": "Fresh roast", "cta": "Order"}}
    r = alice.post("/api/v1/tools/marketing", json=body)
    assert r.status_code == 202, r.text
    queued = r.json()["request"]["options"]["brand"]
    assert queued["name"] == "Shop" and queued["colours"]["primary"] == RED
    assert set(queued["logo"]) == {"sha256", "bytes"}  # the logo is kept as a file, the job names it
    done = wait_job(alice, r.json()["id"], timeout=300)
    assert done["state"] == "succeeded", done["error"]
    (image_id,) = done["images"]
    rec = alice.get(f"/api/v1/images/{image_id}").json()["record"]
    assert rec["details"]["brand"] == "Shop" and rec["details"]["logo"] is not None
    out = np.asarray(Image.open(io.BytesIO(alice.get(f"/api/v1/images/{image_id}.png").content)).convert("RGB"))
    # the banner's text side is the kit's primary colour; the logo's green in its top-left box (with a plate)
    surface = out[out.shape[0] // 2 - 5: out.shape[0] // 2 + 5, 5:15].reshape(-1, 3).astype(int)
    assert np.abs(np.median(surface, axis=0) - (200, 30, 30)).max() <= 3
    x0, y0, x1, y1 = rec["details"]["logo_box"]
    corner = out[y0:y1, x0:x1].reshape(-1, 3).astype(int)
    assert ((corner[:, 1] > 150) & (corner[:, 0] < 80)).mean() > 0.3 and x1 < out.shape[1] // 2 and y1 < out.shape[0] // 2
    # bob cannot use alice's kit: a 422 naming his own kits (none)
    r = bob.post("/api/v1/tools/marketing", json=body)
    assert r.status_code == 422 and "no brand kit named 'Shop'" in r.text and "brand kits: none" in r.text
