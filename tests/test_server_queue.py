"""The durable queue on a real SQLite file: claim order (priority, round-robin by user, age),
compare-and-set state changes, re-queueing a dead worker's job, the startup gallery repair."""

import subprocess
import sys

import pytest

from designerbox.jobs.schema import GenerationRequest
from designerbox.server.queue import JobQueue, JobStateError, UnknownJobError, worker_name
from designerbox.server.worker import store_unfinished
from designerbox.store.gallery import Gallery


def req(prompt: str, **kw) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, **kw)


@pytest.fixture
def queue(tmp_path):
    return JobQueue(tmp_path / "queue.sqlite")


def test_submit_fixes_the_seed_and_keeps_what_was_asked(queue):
    a = queue.submit(req("a cat", steps=3))
    b = queue.submit(req("a dog", seed=7))
    assert set(a.request) == {"prompt", "steps", "seed"} and 0 <= a.request["seed"] < 2**32
    assert b.request == {"prompt": "a dog", "seed": 7}
    assert queue.get(a.id).state == "queued" and queue.position(b.id) == 1
    with pytest.raises(UnknownJobError, match="no job with id 'nope'"):
        queue.get("nope")


def test_claim_order_priority_then_round_robin_by_user_then_age(queue):
    w = worker_name()
    ids = {}
    for i in range(3):  # alice queues a batch of three first
        ids[f"alice{i}"] = queue.submit(req(f"alice {i}"), user="alice").id
    ids["bob0"] = queue.submit(req("bob 0"), user="bob").id
    ids["bob1"] = queue.submit(req("bob 1"), user="bob").id
    ids["urgent"] = queue.submit(req("urgent"), user="carol", priority=5).id
    order = []
    while (job := queue.claim(w, "cpu")) is not None:
        order.append(next(k for k, v in ids.items() if v == job.id))
        assert queue.finish(job.id, w, [])
    # the high-priority job first; then alice and bob take turns, each in the order they queued
    assert order == ["urgent", "alice0", "bob0", "alice1", "bob1", "alice2"]


def test_state_changes_are_compare_and_set(queue):
    job = queue.submit(req("a star"))
    first, second = worker_name(), worker_name()
    claimed = queue.claim(first, "cpu")
    assert claimed.id == job.id and claimed.state == "running" and claimed.attempts == 1
    assert queue.claim(second, "cpu") is None                  # nothing else is queued
    assert not queue.finish(job.id, second, [{"id": "x"}])     # not the holder: no effect
    assert queue.finish(job.id, first, [{"id": "a", "sha256": "0" * 64, "path": "p"}])
    assert not queue.finish(job.id, first, [])                 # finishes once
    assert not queue.fail(job.id, first, "late")
    row = queue.get(job.id)
    assert row.state == "succeeded" and row.public()["images"] == ["a"] and row.error is None


def test_cancel_and_retry_rules(queue):
    w = worker_name()
    queued = queue.submit(req("queued one"))
    assert queue.cancel(queued.id).state == "cancelled"        # a queued job stops at once
    running = queue.submit(req("running one"))
    queue.claim(w, "cpu")
    row = queue.cancel(running.id)
    assert row.state == "running" and row.cancel_requested     # the worker stops it at its next step
    assert queue.mark_cancelled(running.id, w)
    stopped = queue.submit(req("stopped one"))
    queue.claim(w, "cpu")
    assert queue.release(stopped.id, w)                        # the server stops mid-job: back in the queue
    assert (queue.get(stopped.id).state, queue.get(stopped.id).worker) == ("queued", None)
    queue.cancel(stopped.id)
    retried = queue.retry(queued.id)
    assert retried.state == "queued" and retried.retry_of == queued.id
    assert retried.request == queue.get(queued.id).request    # same request, same seed
    done = queue.claim(w, "cpu")
    queue.finish(done.id, w, [])
    with pytest.raises(JobStateError, match="only failed or cancelled jobs can be retried"):
        queue.retry(done.id)
    with pytest.raises(JobStateError, match="already succeeded"):
        queue.cancel(done.id)


def test_a_dead_workers_job_is_queued_again_a_live_ones_is_not(queue):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = worker_name().split(":")[0]
    orphan = queue.submit(req("orphan"))
    queue.claim(f"{host}:{int(dead.stdout)}:dead", "cpu")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        held = queue.submit(req("held"))
        queue.claim(f"{host}:{alive.pid}:live", "cpu")
        assert queue.requeue_orphans() == [orphan.id]
        assert queue.get(orphan.id).state == "queued" and queue.get(orphan.id).worker is None
        assert queue.get(held.id).state == "running"
    finally:
        alive.kill()
        alive.wait()
    again = queue.claim(worker_name(), "cpu")
    assert again.id == orphan.id and again.attempts == 2


def test_startup_repair_stores_images_of_a_job_that_succeeded_just_before_a_crash(tmp_path, queue):
    from designerbox.store.png_metadata import png_bytes
    from PIL import Image

    gallery = Gallery(tmp_path / "gallery")
    record = {"request": {"prompt": "a blue cup"}, "seed": 3, "output_size": [8, 8], "model": {"id": "m", "hash": "h"},
              "versions": {"designerbox": "0"}}
    png = png_bytes(Image.new("RGB", (8, 8), "blue"), record)
    sha, rel = gallery.put_file(png)  # the worker wrote the file and marked the job, then the process died
    w = worker_name()
    job = queue.submit(req("a blue cup"))
    queue.claim(w, "cpu")
    queue.finish(job.id, w, [{"id": sha[:16], "sha256": sha, "path": str(rel)}])
    assert gallery.count() == 0 and [j.id for j in queue.unstored()] == [job.id]
    assert store_unfinished(queue, gallery) == [job.id]
    assert gallery.get(sha[:16]).record == record and queue.unstored() == []
    assert store_unfinished(queue, gallery) == [] and gallery.count() == 1


def test_event_log_keeps_previews_only_while_a_job_runs_and_bounds_its_jobs():
    from designerbox.server.events import EventLog

    log = EventLog(keep=2)
    log.publish("a", "progress", step=1, total=2, preview="png-1")
    log.publish("a", "progress", step=2, total=2, preview="png-2")
    assert log.since("a", 0)[0]["preview"] == "png-1" and log.latest("a", "progress")["preview"] == "png-2"
    log.publish("a", "finished", images=[])
    assert [e["event"] for e in log.since("a", 0)] == ["progress", "progress", "finished"]
    assert "preview" not in log.since("a", 0)[0] and log.latest("a", "progress")["preview"] == "png-2"
    log.publish("b", "queued")
    log.publish("c", "queued")
    assert log.since("a", 0) == [] and log.since("c", 0)[0]["event"] == "queued"
