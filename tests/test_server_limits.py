"""Bad input against a real uvicorn server: bodies over the limit get a 413 before they are read
(announced by Content-Length, or streamed in chunks), uploaded images must be data URLs within the
image limit and readable, and the server answers normally afterwards."""

import base64
import dataclasses
import io
import socket
import time

import httpx
import pytest
from PIL import Image

from designerbox.server.app import create_app
from server_util import ThreadServer, settings

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("limits-home")
    app = create_app(dataclasses.replace(settings(home), max_body_bytes=LIMIT, max_image_bytes=20_000),
                     workers=False)  # nothing runs: jobs stay queued
    with ThreadServer(app) as s:
        s.api = httpx.Client(base_url=s.url, timeout=30)
        yield s


def data_url(im: Image.Image, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


def test_a_body_announced_too_large_is_refused_before_it_is_read(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /api/v1/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000000\r\n\r\n{\"prompt\": ")   # 1 GB promised, 11 bytes sent
        t0 = time.monotonic()
        answer = b""
        while b"}" not in answer:                                        # the JSON error's end (or the close)
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        assert time.monotonic() - t0 < 5                                 # answered without waiting for the body
    head, _, body = answer.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413")
    assert "1000000000 bytes; at most 65536 bytes" in body and "DESIGNERBOX_MAX_BODY_BYTES" in body
    assert server.api.get("/api/v1/presets").status_code == 200           # still up


def test_a_chunked_body_is_cut_off_at_the_limit(server):
    def chunks():
        for _ in range(200):                                             # 200 x 8 KiB = 1.6 MB, no Content-Length
            yield b"x" * 8192

    r = server.api.post("/api/v1/generations", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "at most 65536 bytes" in r.json()["detail"]
    r = server.api.post("/sdapi/v1/txt2img", json={"prompt": "p" * (LIMIT + 1)})
    assert r.status_code == 413
    r = server.api.post("/api/v1/generations", json={"prompt": "a small one", "steps": 2})
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("field", ["init_image", "mask_image"])
def test_image_fields_must_be_data_urls(server, tmp_path, field):
    path = tmp_path / "secret.png"
    Image.new("RGB", (32, 32)).save(path)
    body = {"prompt": "x", "init_image": data_url(Image.new("RGB", (32, 32))), field: str(path)}
    r = server.api.post("/api/v1/generations", json=body)
    assert r.status_code == 422
    err = r.json()["detail"][0]
    assert err["loc"] == ["body", field] and "data URLs (data:image/png;base64,...), not file paths" in err["msg"]


def test_oversized_and_broken_images_are_refused_at_submit(server):
    noise = Image.effect_noise((160, 160), 100).convert("RGB")           # ~77 KB as PNG: over 20,000 bytes
    r = server.api.post("/api/v1/generations", json={"prompt": "x", "init_image": data_url(noise.resize((90, 90)))})
    assert r.status_code == 413, r.text
    err = r.json()["detail"][0]
    assert err["loc"] == ["body", "init_image"] and "over this server's limit of 20000 bytes per image" in err["msg"]
    huge = Image.new("1", (12000, 10000))                                  # 120 megapixels, a tiny PNG
    r = server.api.post("/api/v1/generations", json={"prompt": "x", "init_image": data_url(huge)})
    assert r.status_code == 422 and "over the limit of 100 megapixels" in r.json()["detail"][0]["msg"]
    r = server.api.post("/api/v1/generations", json={"prompt": "x", "init_image": "data:image/png;base64,AAAA"})
    assert r.status_code == 422 and "not an image" in r.json()["detail"][0]["msg"]
    r = server.api.post("/api/v1/generations", json={"prompt": "x", "init_image": "data:image/png;base64,@@"})
    assert r.status_code == 422 and "does not decode" in r.json()["detail"][0]["msg"]
    ok = server.api.post("/api/v1/generations", json={"prompt": "a small input",
                                                      "init_image": data_url(Image.new("RGB", (32, 32), "red"))})
    assert ok.status_code == 202, ok.text
    assert server.api.get(f"/api/v1/jobs/{ok.json()['id']}").json()["state"] == "queued"
