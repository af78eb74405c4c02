"""Batching of concurrent jobs: the worker draws queued generations that share model, size, steps,
sampler, schedule and cfg in one network call (jobs/batch.py). Real built-in model (32x32, 3 steps), real
SQLite queue and gallery; the same jobs run one by one (DESIGNERBOX_BATCH_IMAGES=1) give the reference."""

import base64
import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from designerbox.jobs.schema import GenerationRequest
from designerbox.server.events import EventLog
from designerbox.server.queue import JobQueue
from designerbox.server.worker import Worker
from designerbox.studio import Studio
from server_util import settings

FAST = {"steps": 3, "width": 32, "height": 32}
JOBS = [dict(prompt="a red apple", seed=1, **FAST),
        dict(prompt="a blue car", seed=7, batch_size=2, **FAST),
        dict(prompt="a cat", negative_prompt="blurry", style="flat", seed=9, **FAST),
        dict(prompt="a tree", seed=11, sampler="euler_a", **FAST),      # ancestral: fresh noise every step,
        dict(prompt="a house", seed=12, sampler="euler_a", **FAST),     # each job's from its own generator
        dict(prompt="a kite", seed=3, cfg_scale=2.0, **FAST)]           # another cfg: another network call


@pytest.fixture(scope="module")
def studios(tmp_path_factory):
    """(one by one, batched): Studios on one home, the built-in model loaded once per Studio."""
    home = tmp_path_factory.mktemp("batch-home")
    return (Studio(dataclasses.replace(settings(home), batch_images=1)),
            Studio(dataclasses.replace(settings(home), batch_images=16)))


def run_all(studio, tmp_path, jobs, events=None, users=None):
    """Queue the jobs, then let one worker run until the queue is empty; (rows, worker, network calls)."""
    queue = JobQueue(tmp_path / f"queue-{studio.settings.batch_images}.sqlite")
    worker = Worker(studio, queue, events or EventLog())
    ids = [queue.submit(GenerationRequest(**j), user=(users or {}).get(i, "local")).id for i, j in enumerate(jobs)]
    calls = []
    while worker.run_next():
        calls.append(worker.last_batch or [["alone"]])
        worker.last_batch = []
    return [queue.get(i) for i in ids], worker, calls


def pixels(studio, row) -> list[np.ndarray]:
    return [np.asarray(Image.open(studio.gallery.root / img["path"])).astype(int) for img in row.images]


def test_batched_jobs_draw_what_they_draw_alone(studios, tmp_path):
    alone, batched = studios
    rows_a, _, calls_a = run_all(alone, tmp_path, JOBS)
    rows_b, worker, calls_b = run_all(batched, tmp_path, JOBS)
    assert len(calls_a) == len(JOBS)                                    # one by one
    ids = [r.id for r in rows_b]
    groups = [g for call in calls_b for g in call]
    assert sorted(ids[:3]) == sorted(groups[0])                         # the dpmpp_2m jobs: one call (4 images)
    assert sorted(ids[3:5]) in [sorted(g) for g in groups]              # the two euler_a jobs: one call
    assert len(calls_b) == 3                                            # and the cfg 2 job alone
    for a, b in zip(rows_a, rows_b):
        assert a.state == b.state == "succeeded", (a.error, b.error)
        pa, pb = pixels(alone, a), pixels(batched, b)
        assert len(pa) == len(pb) == a.request.get("batch_size", 1)
        for x, y in zip(pa, pb):
            assert np.abs(x - y).max() <= 1                              # within 1/255
    rec = batched.gallery.get(rows_b[1].images[1]["id"]).record
    assert rec["seed"] == 8 and rec["request"]["prompt"] == "a blue car" and rec["batch_index"] == 1


class CancelAt(EventLog):
    """An event log that asks to cancel job `target` when it reports step `step` (as a user's cancel would)."""

    def __init__(self, step: int):
        super().__init__()
        self.target, self.step = None, step

    def publish(self, job_id, kind, **data):
        super().publish(job_id, kind, **data)
        if kind == "progress" and job_id == self.target and data["step"] == self.step:
            self.request_cancel(job_id)


def test_cancelling_one_job_of_a_batch_keeps_the_others(studios, tmp_path):
    alone, batched = studios
    jobs = [dict(prompt=p, seed=s, **dict(FAST, steps=6)) for p, s in (("a boat", 21), ("a lamp", 22), ("a fox", 23))]
    ref, _, _ = run_all(alone, tmp_path / "ref", [jobs[0], jobs[2]])
    queue = JobQueue(tmp_path / "queue.sqlite")
    events = CancelAt(step=2)
    worker = Worker(batched, queue, events)
    rows = [queue.submit(GenerationRequest(**j)) for j in jobs]
    events.target = rows[1].id
    assert worker.run_next() and not worker.run_next()
    assert sorted(worker.last_batch[0]) == sorted(r.id for r in rows)   # the three in one network call
    done = [queue.get(r.id) for r in rows]
    assert [d.state for d in done] == ["succeeded", "cancelled", "succeeded"]
    assert done[1].images == [] and done[1].step <= 2
    kinds = [e["event"] for e in events.since(rows[1].id, 0)]
    assert kinds[-1] == "cancelled" and kinds.count("progress") == 2
    for r, d in ((ref[0], done[0]), (ref[1], done[2])):
        assert np.abs(pixels(alone, r)[0] - pixels(batched, d)[0]).max() <= 1
        progress = [e for e in events.since(d.id, 0) if e["event"] == "progress"]
        assert [(e["step"], e["total"]) for e in progress] == [(i, 6) for i in range(1, 7)]
        last = np.asarray(Image.open(io.BytesIO(base64.b64decode(progress[-1]["preview"])))).astype(int)
        assert np.abs(last - pixels(batched, d)[0]).max() <= 1          # its own rows: the last estimate is its image
    started = events.latest(rows[0].id, "started")
    assert started["batch"] == 3


def test_a_batch_serves_users_round_robin(studios, tmp_path):
    _, batched = studios
    small = dataclasses.replace(batched.settings, batch_images=3)
    studio = Studio(small)
    studio.cache = batched.cache  # the loaded model
    jobs = [dict(prompt=f"alice's job {i}", seed=i, **FAST) for i in range(5)]
    jobs += [dict(prompt="bob's job", seed=50, **FAST), dict(prompt="carol's job", seed=60, **FAST)]
    users = {i: "alice" for i in range(5)} | {5: "bob", 6: "carol"}
    rows, _, calls = run_all(studio, tmp_path, jobs, users=users)
    by_id = {r.id: users[i] for i, r in enumerate(rows)}
    first = [by_id[i] for i in calls[0][0]]
    assert sorted(first) == ["alice", "bob", "carol"]                   # not three of alice's backlog
    assert [len(c[0]) for c in calls] == [3, 3, 1]
    assert all(r.state == "succeeded" for r in rows)
