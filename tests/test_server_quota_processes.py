"""Quotas across API processes: two `designerbox serve --api-only` processes on one SQLite database
(DESIGNERBOX_DATABASE) take a burst of concurrent requests from one user, half through each; the
concurrent-jobs and jobs-per-minute quotas hold over both together, counted in the database."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from designerbox.server.queue import JobQueue
from designerbox.store.users import UserStore
from server_util import free_port

BURST = 16
REQUEST = {"prompt": "a paper boat", "steps": 2, "width": 32, "height": 32}


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory):
    home = tmp_path_factory.mktemp("quota-home")
    db = f"sqlite:///{home / 'shared.sqlite'}"
    users = UserStore(db)
    users.add_user("alice", "user", max_concurrent=5, jobs_per_minute=0)     # at most 5 queued + running
    users.add_user("bob", "user", max_concurrent=0, jobs_per_minute=6)       # at most 6 a minute
    keys = {name: users.create_key(name)[0] for name in ("alice", "bob")}
    env = dict(os.environ, DESIGNERBOX_HOME=str(home), DESIGNERBOX_DEVICE="cpu", DESIGNERBOX_DATABASE=db,
               OMP_NUM_THREADS="1")
    exe = Path(sys.executable).parent / "designerbox"
    ports, procs = [free_port(), free_port()], []
    for port in ports:
        log = (home / f"serve-{port}.log").open("ab")
        procs.append(subprocess.Popen([str(exe), "serve", "--api-only", "--port", str(port), "--log-level", "warning"],
                                      env=env, stdout=log, stderr=subprocess.STDOUT))
    try:  # the servers are stopped however this ends, a failed start of one of them included
        deadline = time.monotonic() + 120
        for port, proc in zip(ports, procs):
            while True:
                assert proc.poll() is None, (home / f"serve-{port}.log").read_text()[-2000:]
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/v1/presets", timeout=2,
                                 headers={"Authorization": f"Bearer {keys['alice']}"}).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the servers did not start within 120 s"
                time.sleep(0.2)
        yield [f"http://127.0.0.1:{p}" for p in ports], keys, JobQueue(db)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def burst(urls: list[str], key: str) -> list[int]:
    """BURST POSTs at once, alternating between the two servers; their status codes."""
    codes = [0] * BURST
    start = threading.Barrier(BURST)

    def post(i: int) -> None:
        with httpx.Client(base_url=urls[i % 2], timeout=60, headers={"Authorization": f"Bearer {key}"}) as c:
            start.wait()
            codes[i] = c.post("/api/v1/generations", json=REQUEST).status_code

    threads = [threading.Thread(target=post, args=(i,)) for i in range(BURST)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def test_concurrent_jobs_quota_holds_over_two_processes(two_servers):
    urls, keys, queue = two_servers
    codes = burst(urls, keys["alice"])
    assert sorted(codes) == [202] * 5 + [429] * (BURST - 5), codes
    assert len(queue.list(user="alice", limit=100)) == 5
    r = httpx.post(f"{urls[1]}/api/v1/generations", json=REQUEST, headers={"Authorization": f"Bearer {keys['alice']}"})
    assert r.status_code == 429 and "5 jobs queued or running" in r.json()["detail"] and r.headers["Retry-After"]


def test_jobs_per_minute_quota_holds_over_two_processes(two_servers):
    urls, keys, queue = two_servers
    codes = burst(urls, keys["bob"])
    assert sorted(codes) == [202] * 6 + [429] * (BURST - 6), codes
    bobs = queue.list(user="bob", limit=100)
    assert len(bobs) == 6 and {j.state for j in bobs} == {"queued"}  # --api-only: nothing ran them
    r = httpx.post(f"{urls[0]}/api/v1/generations", json=REQUEST, headers={"Authorization": f"Bearer {keys['bob']}"})
    assert r.status_code == 429 and "6 a minute" in r.json()["detail"]
