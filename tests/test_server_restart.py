"""Durability: `designerbox serve` as a real process, SIGKILLed while a job runs. After a restart
the job runs again and finishes exactly once; a job that had finished before is not run again."""

import os
import signal
import sqlite3
import time

import httpx

from server_util import FAST, free_port, start_subprocess_server, wait_job


def test_a_job_running_when_the_server_is_killed_finishes_once_after_restart(tmp_path):
    home, port, log = tmp_path / "home", free_port(), tmp_path / "server.log"
    proc = start_subprocess_server(home, port, log)
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        before = wait_job(api, api.post("/api/v1/generations", json={"prompt": "a finished cup", **FAST}).json()["id"])
        assert before["state"] == "succeeded"
        job = api.post("/api/v1/generations", json={"prompt": "an interrupted kite", "steps": 150, "width": 32,
                                                    "height": 32, "batch_size": 2, "seed": 21}).json()
        deadline = time.monotonic() + 60
        while api.get(f"/api/v1/jobs/{job['id']}").json()["progress"]["step"] < 1:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with sqlite3.connect(home / "queue.sqlite") as db:  # what the dead process left behind
        state, attempts = db.execute("SELECT state, attempts FROM jobs WHERE id = ?", (job["id"],)).fetchone()
    assert (state, attempts) == ("running", 1)

    proc = start_subprocess_server(home, port, log)
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        done = wait_job(api, job["id"], timeout=180)
        assert done["state"] == "succeeded" and done["attempts"] == 2 and len(done["images"]) == 2
        kites = api.get("/api/v1/images", params={"q": "interrupted kite"}).json()["images"]
        assert sorted(i["id"] for i in kites) == sorted(done["images"])        # two images, not four
        assert sorted(i["seed"] for i in kites) == [21, 22]
        again = api.get(f"/api/v1/jobs/{before['id']}").json()
        assert again["attempts"] == 1 and again["finished_at"] == before["finished_at"]  # not run twice
        assert len(api.get("/api/v1/images", params={"q": "finished cup"}).json()["images"]) == 1
        # a clean stop (SIGTERM) mid-job puts the job back in the queue at once
        slow = api.post("/api/v1/generations", json={"prompt": "a paused train", "steps": 150, "width": 32,
                                                     "height": 32}).json()
        while api.get(f"/api/v1/jobs/{slow['id']}").json()["progress"]["step"] < 1:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with sqlite3.connect(home / "queue.sqlite") as db:
        assert db.execute("SELECT state, worker, attempts FROM jobs WHERE id = ?", (slow["id"],)).fetchone() == (
            "queued", None, 1)
    assert "Traceback" not in log.read_text()
    assert not [p for p in (home / "gallery").rglob("*") if p.name.endswith(".tmp")]  # no half-written file
