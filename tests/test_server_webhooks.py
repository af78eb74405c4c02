"""Webhooks against a real HTTP receiver on localhost that checks each signature: a POST per job
end (succeeded, failed, cancelled), retries with backoff after a receiver error, a slow receiver
that does not hold up the worker, the allow-list checked at submit time, and callbacks left pending
by a stopped server sent when it starts again."""

import dataclasses
import hashlib
import shutil
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from designerbox.server.app import create_app
from designerbox.server.queue import JobQueue
from designerbox.jobs.schema import GenerationRequest
from designerbox.server.webhooks import CallbackURLError, check_callback_url, server_secret, user_secret
from server_util import FAST, ThreadServer, settings, wait_job


class Receiver:
    """An HTTP server on 127.0.0.1 that records each POST and whether its signature checks out."""

    def __init__(self):
        self.posts: list[dict] = []
        self.plan: dict[str, list] = {}   # path -> statuses (or ("sleep", s)) to answer in turn; then 200
        self.secrets: dict[str, str] = {}  # path -> the secret its signatures are checked with
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                secret = receiver.secrets.get(self.path, receiver.secrets.get("*", ""))
                expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                receiver.posts.append({"path": self.path, "body": json.loads(body), "time": time.time(),
                                       "event": self.headers["X-DesignerBox-Event"],
                                       "signed": hmac.compare_digest(expected,
                                                                     self.headers["X-DesignerBox-Signature"])})
                todo = receiver.plan.get(self.path)
                answer = todo.pop(0) if todo else 200
                if isinstance(answer, tuple):
                    time.sleep(answer[1])
                    answer = 200
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.http.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def wait(self, path: str, n: int = 1, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(got := [p for p in self.posts if p["path"] == path]) < n:
            assert time.monotonic() < deadline, f"{len(got)} of {n} POSTs to {path}: {self.posts}"
            time.sleep(0.02)
        return got


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.http.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory, receiver, tiny_model_dir):
    home = tmp_path_factory.mktemp("webhook-home")
    broken = shutil.copytree(tiny_model_dir, home / "models" / "tiny-test")  # weights cut short: its jobs fail
    weights = next(broken.rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    app = create_app(dataclasses.replace(settings(home), webhook_hosts=(f"127.0.0.1:{receiver.port}",)))
    app.state.webhooks.first_delay = 0.2  # retries after 0.2, 0.4, 0.8 s...
    with ThreadServer(app) as s:
        s.api = httpx.Client(base_url=s.url, timeout=60)
        receiver.secrets["*"] = s.api.get("/api/v1/me").json()["webhook_secret"]
        yield s


def submit(server, receiver, path: str, body: dict) -> dict:
    r = server.api.post("/api/v1/generations", params={"callback_url": receiver.url + path}, json=body)
    assert r.status_code == 202, r.text
    return r.json()


def test_a_finished_job_is_posted_once_and_signed(server, receiver):
    job = submit(server, receiver, "/done", {"prompt": "a signed apple", **FAST})
    assert job["callback"] == {"url": receiver.url + "/done", "state": "pending", "attempts": 0, "error": None}
    done = wait_job(server.api, job["id"])
    [post] = receiver.wait("/done")
    assert post["signed"] and post["event"] == "job.succeeded"
    body = post["body"]
    assert body["event"] == "job.succeeded" and body["job"]["id"] == job["id"] and body["attempt"] == 1
    assert body["image_paths"] == [f"/api/v1/images/{i}.png" for i in done["images"]]
    assert server.api.get(body["image_paths"][0]).status_code == 200
    deadline = time.monotonic() + 10
    while server.api.get(f"/api/v1/jobs/{job['id']}").json()["callback"]["state"] != "delivered":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    assert len(receiver.wait("/done")) == 1                                  # once


def test_failed_and_cancelled_jobs_are_posted(server, receiver):
    slow = submit(server, receiver, "/cancelled", {"prompt": "a cancelled moon", "steps": 150, "width": 32,
                                                    "height": 32})
    server.api.post(f"/api/v1/jobs/{slow['id']}/cancel")
    [post] = receiver.wait("/cancelled")
    assert post["signed"] and post["body"]["event"] == "job.cancelled" and post["body"]["job"]["state"] == "cancelled"
    bad = submit(server, receiver, "/failed", {"prompt": "a failing cat", "model": "tiny-test"})
    [post] = receiver.wait("/failed")
    assert post["signed"] and post["body"]["event"] == "job.failed" and post["body"]["job"]["id"] == bad["id"]
    assert post["body"]["job"]["error"] and post["body"]["image_paths"] == []


def test_a_receiver_error_is_retried_with_backoff(server, receiver):
    receiver.plan["/flaky"] = [500, 503, 200]
    job = submit(server, receiver, "/flaky", {"prompt": "a flaky pear", **FAST})
    posts = receiver.wait("/flaky", 3)
    assert [p["body"]["attempt"] for p in posts] == [1, 2, 3] and all(p["signed"] for p in posts)
    gaps = [b["time"] - a["time"] for a, b in zip(posts, posts[1:])]
    assert gaps[0] >= 0.15 and gaps[1] >= 0.35                               # 0.2 s, then 0.4 s
    deadline = time.monotonic() + 10
    while (cb := server.api.get(f"/api/v1/jobs/{job['id']}").json()["callback"])["state"] != "delivered":
        assert time.monotonic() < deadline, cb
        time.sleep(0.05)
    assert cb["attempts"] == 3
    receiver.plan["/gone"] = [404, 200]                                       # a 4xx is final: not retried
    job = submit(server, receiver, "/gone", {"prompt": "a lost pear", **FAST})
    receiver.wait("/gone")
    deadline = time.monotonic() + 10
    while (cb := server.api.get(f"/api/v1/jobs/{job['id']}").json()["callback"])["state"] != "failed":
        assert time.monotonic() < deadline, cb
        time.sleep(0.05)
    assert cb["error"] == "HTTP 404 from the receiver" and len(receiver.wait("/gone")) == 1


def test_a_slow_receiver_does_not_hold_up_the_worker(server, receiver):
    receiver.plan["/slow"] = [("sleep", 4.0)]
    first = submit(server, receiver, "/slow", {"prompt": "a slow receiver", **FAST})
    [post] = receiver.wait("/slow")                          # the receiver holds this POST for 4 s
    second = server.api.post("/api/v1/generations", json={"prompt": "the next job", **FAST}).json()
    assert wait_job(server.api, second["id"])["state"] == "succeeded"
    assert time.time() - post["time"] < 4.0                  # done while the receiver still held the callback
    assert server.api.get(f"/api/v1/jobs/{first['id']}").json()["callback"]["state"] == "pending"
    deadline = time.monotonic() + 15
    while server.api.get(f"/api/v1/jobs/{first['id']}").json()["callback"]["state"] != "delivered":
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.parametrize("url, words", [
    ("http://example.com/hook", ["host example.com:80 is not on the webhook allow-list",
                                 "DESIGNERBOX_WEBHOOK_HOSTS", "127.0.0.1:"]),
    ("http://127.0.0.1:1/hook", ["127.0.0.1:1 is not on the webhook allow-list"]),
    ("ftp://127.0.0.1/x", ["must be an http:// or https:// URL"]),
    ("http://user:pw@127.0.0.1/x", ["must not carry a user name or password"]),
])
def test_hosts_off_the_allow_list_are_refused_at_submit(server, url, words):
    r = server.api.post("/api/v1/generations", params={"callback_url": url}, json={"prompt": "x", **FAST})
    assert r.status_code == 422, r.text
    err = r.json()["detail"][0]
    assert err["loc"] == ["body", "callback_url"]
    for word in words:
        assert word in err["msg"]


def test_the_allow_list_rules():
    assert check_callback_url("https://Hooks.Example.com/x", ("hooks.example.com",))
    assert check_callback_url("http://hooks.example.com:8080/x", ("hooks.example.com:8080",))
    with pytest.raises(CallbackURLError, match="hooks.example.com:8081 is not on"):
        check_callback_url("http://hooks.example.com:8081/x", ("hooks.example.com:8080",))
    with pytest.raises(CallbackURLError, match="callbacks are off on this server"):
        check_callback_url("http://hooks.example.com/x", ())


def test_a_callback_left_pending_is_sent_when_the_server_starts_again(tmp_path, receiver):
    """The job ended in a process that stopped before the POST: the next start sends it."""
    home = tmp_path / "home"
    queue = JobQueue(home / "queue.sqlite")
    job = queue.submit(GenerationRequest(prompt="a late letter"), callback_url=receiver.url + "/late")
    queue.cancel(job.id)                                     # ended; its callback still pending
    app = create_app(dataclasses.replace(settings(home), webhook_hosts=(f"127.0.0.1:{receiver.port}",)),
                     workers=False)
    receiver.secrets["/late"] = user_secret(server_secret(home), "local")  # what /api/v1/me will show
    with ThreadServer(app) as s:
        assert httpx.get(f"{s.url}/api/v1/me").json()["webhook_secret"] == receiver.secrets["/late"]
        [post] = receiver.wait("/late")
        assert post["body"]["job"]["id"] == job.id and post["body"]["event"] == "job.cancelled"
        assert post["signed"]                                 # with this home's secret for the local user
        assert JobQueue(home / "queue.sqlite").get(job.id).callback_state in ("pending", "delivered")
