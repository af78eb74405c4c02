"""Helpers for the server tests: a real uvicorn server on a free loopback port, in a thread or a
subprocess, and waiting on jobs through the REST API."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from designerbox.settings import Settings

FAST = {"steps": 2, "width": 32, "height": 32}  # the built-in 32x32 model, two sampling steps


def settings(home: Path) -> Settings:
    return Settings(home=Path(home), device="cpu", cache_mb=1024)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadServer:
    """uvicorn serving an app in a thread of this process (lifespan included: workers run)."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ThreadServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def start_subprocess_server(home: Path, port: int, log: Path, args: tuple[str, ...] = ()) -> subprocess.Popen:
    """`designerbox serve` as its own process (so it can be SIGKILLed); returns once it answers."""
    env = dict(os.environ, DESIGNERBOX_HOME=str(home), DESIGNERBOX_DEVICE="cpu", OMP_NUM_THREADS="1")
    exe = Path(sys.executable).parent / "designerbox"
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), "--log-level", "warning", *args], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/presets", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server did not answer within 90 s: {log.read_text()[-2000:]}")


def wait_job(client, job_id: str, until=("succeeded", "failed", "cancelled"), timeout: float = 120) -> dict:
    """Poll GET /api/v1/jobs/{id} until its state is one of `until` (client: httpx.Client or TestClient)."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in until:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s")
        time.sleep(0.05)
