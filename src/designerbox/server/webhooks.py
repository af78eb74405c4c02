"""Webhooks: a job's optional callback URL gets a signed POST when the job ends (succeeded, failed
or cancelled), from a thread of its own, so a slow or dead receiver never holds up a worker.

    POST <callback_url>
    Content-Type: application/json
    X-DesignerBox-Event: job.succeeded | job.failed | job.cancelled
    X-DesignerBox-Delivery: <job id>
    X-DesignerBox-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the job owner's secret>

    {"event": "job.succeeded", "job": {...the job as GET /api/v1/jobs/{id} shows it...},
     "image_paths": ["/api/v1/images/<id>.png", ...], "attempt": 1, "sent_at": 1760000000.123}

Secrets are per user: HMAC-SHA256(server secret, "designerbox-webhook:" + user name), so one user
cannot forge another's callbacks; a user reads theirs at GET /api/v1/me. The server secret is
DESIGNERBOX_WEBHOOK_SECRET, or else 32 random bytes kept in home/webhook-secret (written once,
mode 0600); changing it changes every user's secret.

Only hosts on the admin's allow-list (Settings.webhook_hosts, DESIGNERBOX_WEBHOOK_HOSTS: "host" or
"host:port" entries) are accepted, checked when the job is submitted. Redirects are not followed
(a receiver could send the POST on to a host off the list). A delivery that fails (no connection,
a timeout, a 5xx or 429) is tried again after `first_delay` seconds, then twice as long each time,
`attempts` times in all; a 4xx other than 429 is final. The state of each callback (pending,
delivered, failed) is kept in the job's row, so callbacks pending when the server stops are sent
when it starts again.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import logging
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from designerbox.server.queue import FINAL_STATES, JobQueue
from designerbox.store.png_metadata import write_atomic

log = logging.getLogger("designerbox.webhooks")

SIGNATURE_HEADER = "X-DesignerBox-Signature"
EVENTS = {"succeeded": "job.succeeded", "failed": "job.failed", "cancelled": "job.cancelled"}


class CallbackURLError(ValueError):
    pass


def check_callback_url(url: str, allowed: tuple[str, ...]) -> str:
    """The URL if its host (or host:port) is on the allow-list; else CallbackURLError naming the list."""
    if len(url) > 2048:
        raise CallbackURLError(f"callback_url is {len(url)} characters long; at most 2048")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise CallbackURLError(f"callback_url {url!r} has a bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackURLError(f"callback_url must be an http:// or https:// URL with a host, not {url!r}")
    if parts.username or parts.password:
        raise CallbackURLError("callback_url must not carry a user name or password")
    if not allowed:
        raise CallbackURLError("callbacks are off on this server: its webhook allow-list is empty (an admin "
                               "sets DESIGNERBOX_WEBHOOK_HOSTS, e.g. 'hooks.example.com,127.0.0.1:9000')")
    host = parts.hostname.lower()
    port = port or (443 if parts.scheme == "https" else 80)
    if host not in allowed and f"{host}:{port}" not in allowed:
        raise CallbackURLError(f"callback_url host {host}:{port} is not on the webhook allow-list "
                               f"(DESIGNERBOX_WEBHOOK_HOSTS): {', '.join(allowed)}")
    return url


def server_secret(home: Path) -> bytes:
    """DESIGNERBOX_WEBHOOK_SECRET, or the random secret in home/webhook-secret (created on first use)."""
    if os.environ.get("DESIGNERBOX_WEBHOOK_SECRET"):
        return os.environ["DESIGNERBOX_WEBHOOK_SECRET"].encode()
    path = Path(home) / "webhook-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o077)
        try:
            write_atomic(path, secrets.token_hex(32).encode())
        finally:
            os.umask(old)
    return path.read_bytes().strip()


def user_secret(server: bytes, user: str) -> str:
    """The secret a user's receiver checks signatures with."""
    return hmac.new(server, b"designerbox-webhook:" + user.encode(), hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx comes back as an HTTPError: not delivered


class WebhookSender:
    """Delivers callbacks from one background thread; `notify(job_id)` only schedules (never blocks)."""

    def __init__(self, queue: JobQueue, secret: bytes, *, attempts: int = 5, first_delay: float = 2.0,
                 timeout: float = 10.0):
        self.queue, self.secret = queue, secret
        self.attempts, self.first_delay, self.timeout = attempts, first_delay, timeout
        self._due: list[tuple[float, int, str, int]] = []  # (when, tie-break, job id, attempt)
        self._count = 0
        self._cv = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._opener = urllib.request.build_opener(_NoRedirect)

    def start(self) -> None:
        for job_id in self.queue.pending_callbacks():  # left pending by a process that stopped
            self.notify(job_id)
        self._thread = threading.Thread(target=self._run, name="designerbox-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop; callbacks not yet delivered stay pending in the queue and are sent at the next start."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def notify(self, job_id: str, attempt: int = 1, delay: float = 0.0) -> None:
        with self._cv:
            self._count += 1
            heapq.heappush(self._due, (time.monotonic() + delay, self._count, job_id, attempt))
            self._cv.notify()

    def on_event(self, job_id: str, kind: str) -> None:
        """EventLog listener: a job ended."""
        self.notify(job_id)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stop and (not self._due or self._due[0][0] > time.monotonic()):
                    self._cv.wait(None if not self._due else max(0.0, self._due[0][0] - time.monotonic()))
                if self._stop:
                    return
                _, _, job_id, attempt = heapq.heappop(self._due)
            try:
                self._deliver(job_id, attempt)
            except Exception:  # noqa: BLE001 - the sender must outlive any one callback; logged
                log.exception("callback of job %s: unexpected error", job_id)

    def _deliver(self, job_id: str, attempt: int) -> None:
        row = self.queue.get(job_id)
        if not row.callback_url or row.callback_state != "pending" or row.state not in FINAL_STATES:
            return
        payload = {"event": EVENTS[row.state], "job": row.public(),
                   "image_paths": [f"/api/v1/images/{i['id']}.png" for i in row.images or []],
                   "attempt": attempt, "sent_at": round(time.time(), 3)}
        body = json.dumps(payload, separators=(",", ":")).encode()
        request = urllib.request.Request(row.callback_url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "DesignerBox-Webhook",
            "X-DesignerBox-Event": payload["event"], "X-DesignerBox-Delivery": job_id,
            SIGNATURE_HEADER: sign(user_secret(self.secret, row.user), body)})
        error, final = None, False
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read(65536)
        except urllib.error.HTTPError as err:
            error = f"HTTP {err.code} from the receiver"
            final = err.code < 500 and err.code != 429
        except (urllib.error.URLError, OSError) as err:
            error = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
        if error is None:
            self.queue.callback_result(job_id, "delivered", attempt)
        elif final or attempt >= self.attempts:
            log.warning("callback of job %s to %s failed after %d attempt(s): %s", job_id, row.callback_url,
                        attempt, error)
            self.queue.callback_result(job_id, "failed", attempt, error)
        else:
            self.queue.callback_result(job_id, "pending", attempt, error)
            self.notify(job_id, attempt + 1, self.first_delay * 2 ** (attempt - 1))
